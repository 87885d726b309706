"""Environment for the test suite, set before Django reads its settings."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("FAST_PASSWORD_HASHER", "1")
os.environ.setdefault("POLLSTR_VAR_DIR", tempfile.mkdtemp(prefix="pollstr-test-"))
# Unit tests never start the in-process worker; integration tests start real workers.
os.environ.setdefault("CELERY_EMBEDDED_WORKER", "0")
