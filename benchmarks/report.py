"""RESULTS.md, results.json and the latency-vs-load plot."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import Figure


@dataclass
class Machine:
    cpus: int
    memory_gb: float
    cpu_model: str
    kernel: str
    python: str

    @classmethod
    def here(cls) -> Machine:
        return cls(
            cpus=os.cpu_count() or 0,
            memory_gb=round(_meminfo_kb("MemTotal") / 1024 / 1024, 1),
            cpu_model=_cpu_model(),
            kernel=platform.release(),
            python=platform.python_version(),
        )


def _meminfo_kb(name: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


@dataclass
class Report:
    machine: Machine
    started: dt.datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    mode: str = "full"
    setup: dict[str, str] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    profiles: list[Any] = field(default_factory=list)  # benchmarks.profiles.Profile
    notes: list[str] = field(default_factory=list)
    # Markdown sections a scenario writes beside its figures (P2's cost of a voter).
    sections: list[str] = field(default_factory=list)


def fmt(value: float, unit: str = "") -> str:
    if math.isnan(value):
        return "—"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    if unit in ("ms", "/s", "KB") or abs(value) >= 100:
        text = f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text


def _met(figure: Figure) -> str:
    if figure.target is None:
        return ""
    return {True: "met", False: "**missed**", None: "not measured"}[figure.met]


def _loads(values: Sequence[float]) -> str:
    return " / ".join("—" if math.isnan(v) else f"{v:.2f}" for v in values)


def render_markdown(report: Report) -> str:
    m = report.machine
    lines = [
        "# Pollstr benchmarks (issue 7)",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); see `benchmarks/README.md` for "
        "what each figure measures and how. Every figure is the median of the repetitions "
        "listed beside it, Pollstr and its baseline interleaved in one run.",
        "",
        "| machine | |",
        "|---|---|",
        f"| date | {report.started:%Y-%m-%d %H:%M} UTC |",
        f"| CPUs (`nproc`) | {m.cpus} |",
        f"| memory | {m.memory_gb} GiB |",
        f"| CPU model | {m.cpu_model} |",
        f"| kernel, Python | {m.kernel}, {m.python} |",
        f"| load average before (1/5/15 min) | {_loads(report.load_before)} |",
        f"| load average after | {_loads(report.load_after)} |",
        f"| mode | {report.mode} |",
    ]
    lines += [f"| {key} | {value} |" for key, value in report.setup.items()]
    lines += [
        "",
        "## Figures",
        "",
        "| figure | Pollstr | baseline | ratio | target | | repetitions (Pollstr; baseline) |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for f in report.figures:
        unit = f" {f.unit}" if f.unit else ""
        reps = "; ".join(
            [
                ", ".join(fmt(v, f.unit) for v in f.values),
                ", ".join(fmt(v, f.unit) for v in f.baseline_values),
            ]
        )
        lines.append(
            f"| {f.label} | {fmt(f.value, f.unit)}{unit} | {fmt(f.baseline, f.unit)}{unit} "
            f"({f.baseline_label}) | {fmt(f.ratio)} | "
            f"{f.target.describe(f.unit) if f.target else ''} | {_met(f)} | {reps} |"
        )
    notes = [f"- **{f.label}**: {f.note}" for f in report.figures if f.note]
    if notes or report.notes:
        lines += ["", "## Notes", "", *notes, *(f"- {note}" for note in report.notes)]
    lines += _targets(report.figures)
    for section in report.sections:
        lines += ["", section.rstrip()]
    if report.profiles:
        lines += ["", "## Profiles", ""]
        for profile in report.profiles:
            lines += [
                f"### {profile.name}",
                "",
                f"{profile.requests} requests through Django's test client (PostgreSQL, Redis): "
                f"{profile.mean_ms:.1f} ms and {profile.queries:.1f} SQL queries per request "
                "(times include the profiler's overhead).",
                "",
                "```",
                profile.top,
                "```",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def _targets(figures: Sequence[Figure]) -> list[str]:
    targeted = [f for f in figures if f.target is not None]
    if not targeted:
        return []
    met = [f.label for f in targeted if f.met]
    missed = [f.label for f in targeted if f.met is False]
    lines = ["", "## Targets", "", f"{len(met)} of {len(targeted)} met."]
    if missed:
        lines.append("Missed: " + "; ".join(missed) + ".")
    return lines


def write_json(report: Report, path: Path) -> None:
    payload = {
        "machine": asdict(report.machine),
        "started": report.started.isoformat(),
        "load_before": report.load_before,
        "load_after": report.load_after,
        "mode": report.mode,
        "setup": report.setup,
        "figures": [f.as_dict() for f in report.figures],
        "notes": report.notes,
        "sections": report.sections,
        "profiles": [asdict(p) for p in report.profiles],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


_NAMES = {"pollstr": "Pollstr", "baseline": "sync baseline"}


def write_plot(plot: dict[str, Any], path: Path) -> bool:
    """Latency vs load for Pollstr and the baseline (P1 by voters; P2 at its voters).
    False when nothing to plot was measured."""
    if not plot.get("p1") and not plot.get("p2"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    left, right = axes
    if plot.get("p1"):
        voters = sorted(plot["p1"])
        for system, color in (("pollstr", "tab:blue"), ("baseline", "tab:orange")):
            for q, style in ((0, "-"), (1, "--")):
                left.plot(
                    voters,
                    [plot["p1"][v][system][q] for v in voters],
                    style,
                    marker="o",
                    color=color,
                    label=f"{_NAMES[system]} p{50 if q == 0 else 99}",
                )
        left.set_xscale("log")
        plotted = [v for point in plot["p1"].values() for pair in point.values() for v in pair]
        if all(v > 0 for v in plotted if not math.isnan(v)):
            left.set_yscale("log")  # targets are tens of ms, a backlog is seconds
        left.set_xticks(voters, [str(v) for v in voters])
        left.set_xlabel("concurrent voters")
        left.set_ylabel("ms (minus provider latency)")
        left.set_title("P1: number submit → code sent")
        left.legend(fontsize=8)
        left.grid(True, alpha=0.3)
    if plot.get("p2"):
        names = ["number_p99", "code_p99", "flow_p50", "flow_p99"]
        labels = ["number submit p99", "code submit p99", "flow p50", "flow p99"]
        width = 0.38
        for offset, (system, color) in enumerate(
            (("pollstr", "tab:blue"), ("baseline", "tab:orange"))
        ):
            values = [plot["p2"].get(system, {}).get(n, math.nan) for n in names]
            right.bar(
                [i + (offset - 0.5) * width for i in range(len(names))],
                values,
                width,
                color=color,
                label="Pollstr" if system == "pollstr" else "sync baseline",
            )
        right.set_xticks(range(len(names)), labels, fontsize=8)
        right.set_yscale("log")
        right.set_ylabel("ms")
        right.set_title("P2: 20 voters looping the flow (first repetition)")
        right.legend(fontsize=8)
        right.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
