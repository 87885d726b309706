"""The web tier's own timings, read from its access log (``pollstr/access_log.py``'s
``http.access`` lines): how long each submit took inside the server, without the client's
side of the wait.

Kept free of aiohttp, as ``benchmarks/stats.py``, so ``tests/test_benchmarks.py`` checks it
inside ``make test``.
"""

from __future__ import annotations

import re

_ACCESS_LINE = re.compile(
    r"http\.access method=(?P<method>\S+) path=(?P<path>\S+) status=\S+ duration_ms=(?P<ms>[\d.]+)"
)
_CODE_SUBMIT = re.compile(r"/2fa/v/[0-9a-f-]+/code/")


def submits_served(log: str) -> dict[str, list[float]]:
    """The number and code submits' durations (ms) in a stretch of the web tier's log."""
    served: dict[str, list[float]] = {"number": [], "code": []}
    for line in _ACCESS_LINE.finditer(log):
        if line["method"] != "POST":
            continue
        if line["path"] == "/2fa/":
            served["number"].append(float(line["ms"]))
        elif _CODE_SUBMIT.fullmatch(line["path"]):
            served["code"].append(float(line["ms"]))
    return served
