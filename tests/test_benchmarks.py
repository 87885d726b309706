"""The benchmark harness (benchmarks/) without any load: its statistics, its report
writer, its command line and the Verify double's injected latency. `make bench` runs the
real thing; nothing here starts a server but the double."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import phonenumbers
import pytest
import requests

from benchmarks import access, infra, report, run
from benchmarks.fixtures import NUMBERS_END, NUMBERS_FIRST
from benchmarks.infra import compose_defaults
from benchmarks.stats import (
    Figure,
    Samples,
    Target,
    median_of,
    medians_lines,
    percentile,
    ratio,
)
from benchmarks.verify_double import latest_code
from tests.fakes.verify_server import FAKE_API_KEY, FAKE_API_SECRET, FakeVerifyServer


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))


def test_percentile_refuses_a_rank_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_a_figure_is_the_median_of_its_repetitions_and_ignores_missing_ones() -> None:
    assert median_of([3.0, 1.0, 2.0]) == 2.0
    assert median_of([4.0, math.nan, 2.0]) == 3.0
    assert math.isnan(median_of([math.nan]))
    figure = Figure(
        "P2.flows",
        "flows",
        "/s",
        "higher",
        values=[2.7, 3.1, 2.9],
        baseline_values=[20.0, 19.0, 21.0],
        target=Target(">=", 2.0, on="ratio"),
    )
    assert figure.value == 2.9
    assert figure.baseline == 20.0
    assert figure.ratio == pytest.approx(0.145)
    assert figure.met is False


def test_ratio_is_missing_without_a_usable_baseline() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 1.0))


@pytest.mark.parametrize(
    ("target", "value", "ratio_value", "met"),
    [
        (Target("<=", 50), 49.0, math.nan, True),
        (Target("<=", 50), 51.0, math.nan, False),
        (Target(">=", 0.9, on="ratio"), 1.0, 0.95, True),
        (Target(">=", 0.9, on="ratio"), 1.0, math.nan, None),
    ],
)
def test_a_target_is_met_not_met_or_not_measured(
    target: Target, value: float, ratio_value: float, met: bool | None
) -> None:
    assert target.met(value, ratio_value) is met


def test_samples_give_rates_and_percentiles_in_milliseconds() -> None:
    samples = Samples(elapsed=2.0)
    for seconds in (0.010, 0.020, 0.030):
        samples.add("code", seconds)
        samples.count("flow")
    assert samples.rate("flow") == 1.5
    assert samples.ms("code", 50) == pytest.approx(20.0)
    assert math.isnan(samples.ms("number", 50))


def _report() -> report.Report:
    machine = report.Machine(
        cpus=2, memory_gb=23.5, cpu_model="Test CPU", kernel="6", python="3.11"
    )
    figures = [
        Figure(
            "P2.flows",
            "P2 verified flows/s",
            "/s",
            "higher",
            values=[5.5, 6.5, 7.5],
            baseline_values=[2.5, 3.25, 4.0],
            baseline_label="sync baseline",
            target=Target(">=", 2.0, on="ratio"),
        ),
        Figure(
            "P2.code_p99",
            "P2 code submit p99",
            "ms",
            "lower",
            values=[80.0, 90.0, 70.0],
            baseline_values=[600.0, 610.0, 620.0],
            baseline_label="sync baseline",
            target=Target("<=", 50),
            note="2 failed flows",
        ),
    ]
    return report.Report(
        machine=machine,
        started=dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC),
        load_before=(0.5, 0.6, 0.7),
        load_after=(1.5, 1.6, 1.7),
        mode="full",
        setup={"repetitions": "3"},
        figures=figures,
    )


def test_results_md_lists_machine_figures_baselines_ratios_and_targets() -> None:
    text = report.render_markdown(_report())
    assert "| CPUs (`nproc`) | 2 |" in text
    assert "| CPU model | Test CPU |" in text
    assert "| load average before (1/5/15 min) | 0.50 / 0.60 / 0.70 |" in text
    assert "| load average after | 1.50 / 1.60 / 1.70 |" in text
    flows = next(line for line in text.splitlines() if line.startswith("| P2 verified flows/s"))
    assert "| 6.5 /s | 3.2 /s (sync baseline) | 2 | ratio ≥ 2 | met |" in flows
    assert "| 5.5, 6.5, 7.5; 2.5, 3.2, 4 |" in flows
    code = next(line for line in text.splitlines() if line.startswith("| P2 code submit p99"))
    assert "| 80 ms | 610 ms (sync baseline) |" in code
    assert "**missed**" in code
    assert "- **P2 code submit p99**: 2 failed flows" in text
    assert "1 of 2 met." in text
    assert "Missed: P2 code submit p99." in text


def test_results_json_and_plot_are_written(tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="make bench installs matplotlib (benchmarks/requirements.txt)"
    )
    rep = _report()
    report.write_json(rep, tmp_path / "results.json")
    assert '"ratio": 2.0' in (tmp_path / "results.json").read_text()
    plot = {
        "p1": {
            1: {"pollstr": (10.0, 20.0), "baseline": (100.0, 120.0)},
            10: {"pollstr": (15.0, 40.0), "baseline": (150.0, 300.0)},
        },
        "p2": {"pollstr": {"flow_p50": 900.0}, "baseline": {"flow_p50": 1300.0}},
    }
    assert report.write_plot(plot, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not report.write_plot({}, tmp_path / "none.png")


def test_the_command_line_runs_a_subset_and_refuses_unknown_figures() -> None:
    args = run.parse_args(["--only", "p2,P5", "--quick"])
    assert args.only == ("P2", "P5")
    assert args.out == run.BENCH_DIR / "results" / "quick"
    assert run.parse_args(["--profile"]).only == ("profile",)
    assert run.parse_args([]).out == run.BENCH_DIR
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "P9"])
    with pytest.raises(SystemExit):
        run.parse_args(["--reps", "0"])


def test_the_benchmark_measures_what_compose_deploys() -> None:
    deployment = compose_defaults()
    assert deployment.web_concurrency >= 1
    assert deployment.worker_concurrency >= 1
    assert deployment.worker_pool in {"prefork", "threads", "solo", "eventlet", "gevent"}


def test_the_load_generator_is_refused_by_no_limit_meant_for_one_attacker() -> None:
    """Every voter of a run signs up and asks for codes from 127.0.0.1 and one region: each
    limit that counts by address, network, session or region is raised for the run (the
    checks still run). A new limit of that kind would otherwise make P2 measure 429s."""
    settings_source = (Path(__file__).parents[1] / "pollstr/settings/two_factor.py").read_text()
    per_source = set(re.findall(r'"(RATE_(?:START|SIGNUP|CHECK|NUMBER)_[A-Z_]+)"', settings_source))
    assert "RATE_START_PER_NETWORK" in per_source  # the pattern still reads the settings
    raised = {*infra._RATE_LIMITS, *infra._BUDGET}
    assert per_source <= raised, f"not raised for the benchmark: {sorted(per_source - raised)}"
    caps = set(re.findall(r'"(SMS_(?:COUNTRY_)?DAILY_[A-Z]+)"', settings_source))
    assert caps
    assert caps <= raised, f"not raised for the benchmark: {sorted(caps - raised)}"


def test_every_number_the_voters_can_be_given_is_a_mobile_the_site_accepts() -> None:
    for block in range(NUMBERS_FIRST, NUMBERS_END, 100_000):
        for number in (block, block + 99_999):
            parsed = phonenumbers.parse(f"+336{number:08d}")
            assert phonenumbers.is_valid_number(parsed), number
            assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE


def test_the_voter_reads_the_latest_code_sent_to_their_number() -> None:
    messages = [
        {"to": "33612345678", "code": "111111"},
        {"to": "33699999999", "code": "222222"},
        {"to": "33612345678", "code": "333333"},
    ]
    assert latest_code(messages, "+33612345678") == "333333"
    assert latest_code(messages, "+33600000000") is None


def test_the_verify_double_waits_its_injected_latency_on_every_call() -> None:
    with FakeVerifyServer(latency=0.25) as fake:
        body = {"brand": "Pollstr", "workflow": [{"channel": "sms", "to": "33612345678"}]}
        started = time.monotonic()
        response = requests.post(
            f"https://{fake.host}/v2/verify",
            json=body,
            auth=(FAKE_API_KEY, FAKE_API_SECRET),
            verify=fake.ca_bundle_path,
            timeout=5,
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 202
    assert elapsed >= 0.25
    assert fake.messages[0]["to"] == "33612345678"


def test_the_verify_double_refuses_a_negative_latency() -> None:
    with pytest.raises(ValueError, match="latency"):
        FakeVerifyServer(latency=-1)


def test_a_micro_benchmarks_lines_give_each_modes_median_then_its_repetitions_in_order() -> None:
    lines = medians_lines({"as shipped": [0.5, 0.7, 0.6], "fixed": [0.3]}, unit="ms", digits=3)

    assert lines == ["  as shipped: 0.600 ms (0.500, 0.700, 0.600)", "  fixed: 0.300 ms (0.300)"]


@pytest.mark.redis
def test_the_push_micro_benchmark_runs_each_path_and_leaves_nothing_behind(capsys) -> None:
    import os

    import redis

    from benchmarks import publish_cost

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    publish_cost.main(["--publishes", "3", "--repetitions", "2", "--redis-url", url])

    lines = capsys.readouterr().out.splitlines()
    figures = [line for line in lines if line.startswith("  ")]
    assert [line.split(":")[0].strip() for line in figures] == [
        "channels_redis on the publisher's loop thread",
        "blocking client (group_send_blocking)",
        "blocking client, the members read once (groups_listening)",
        "channels_redis's pop (backup queue)",
        "the layer's pop (one BZPOPMIN)",
        "channels_redis, a group at a time",
        "the layer's groups_add / groups_discard",
    ]
    for line in figures:
        assert float(line.split(": ")[1].split(" ms")[0]) > 0
    assert redis.Redis.from_url(url).keys("pollstr-bench-publish-*") == []


def test_p2_reads_the_submits_durations_from_the_web_tiers_own_access_log() -> None:
    """P2's "inside the web tier" p99s parse the lines pollstr.access_log writes, as the
    text format (the default, and what the benchmark's web server runs) renders them."""
    from pollstr import access_log
    from pollstr.logs import TextFormatter

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("pollstr.access")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for method, path, seconds in (
            ("POST", "/2fa/", 0.0235),
            ("POST", "/2fa/v/2aca8ccc-1e2f-49b0-9f2d-1c7c49eeb28c/code/", 0.0135),
            ("GET", "/2fa/", 0.004),  # the number page, not a submit
            ("POST", "/2fa/v/2aca8ccc-1e2f-49b0-9f2d-1c7c49eeb28c/resend/", 0.009),
        ):
            scope = {"type": "http", "method": method, "path": path, "headers": []}
            access_log._log(scope, {"status": 302, "request_id": None}, seconds)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert len(lines) == 4
    served = access.submits_served("\n".join(["unrelated line", *lines]))
    assert served == {"number": [23.5], "code": [13.5]}


# What only `make bench` installs (benchmarks/requirements.txt); CI has requirements-dev.txt.
_BENCH_ONLY = ("aiohttp", "matplotlib", "numpy")
_REFUSE_BENCH_ONLY = f"""
import importlib, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {_BENCH_ONLY!r}:
            raise ModuleNotFoundError(f"{{name}} is installed by make bench only")
sys.meta_path.insert(0, Refuse())
for module in sys.argv[1:]:
    importlib.import_module(module)
"""


def test_no_test_imports_what_only_make_bench_installs() -> None:
    """`make test` installs requirements-dev.txt, not the load client or the plot: a harness
    module a test imports must not import them at the top."""
    root = Path(__file__).resolve().parents[1]
    harness_users = [
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in sorted((root / "tests").rglob("*.py"))
        if re.search(r"^\s*(from|import) benchmarks\b", path.read_text(), re.MULTILINE)
    ]
    assert "tests.test_benchmarks" in harness_users
    done = subprocess.run(
        [sys.executable, "-c", _REFUSE_BENCH_ONLY, *harness_users],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_settled_percentiles_leave_out_the_latencies_that_began_in_the_start_up() -> None:
    samples = Samples(started=100.0)
    samples.latencies["number"] = [0.5, 0.4, 0.01, 0.02]
    samples.began["number"] = [100.1, 101.0, 103.5, 110.0]

    assert samples.ms("number", 100) == pytest.approx(500.0)
    assert samples.ms_settled("number", 100, after=3) == pytest.approx(20.0)
    assert samples.ms_settled("number", 0, after=3) == pytest.approx(10.0)
    assert math.isnan(samples.ms_settled("number", 99, after=20))


def test_a_latency_added_is_dated_from_when_it_began() -> None:
    samples = Samples(started=time.perf_counter() - 1.0)
    samples.add("code", 0.25)

    (began,) = samples.began["code"]
    assert began == pytest.approx(time.perf_counter() - 0.25, abs=0.05)
    assert samples.ms_settled("code", 50, after=0) == pytest.approx(250.0)
