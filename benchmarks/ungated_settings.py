"""P3's comparison server: the project's settings with benchmarks/ungated_urls.py, where
the poll page is the same view without the verified-session check."""

from __future__ import annotations

from pollstr.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.ungated_urls"
