"""The application runs on requirements.txt alone (`make run`, the image): no module of
ours imports a development-only package (type stubs, test tools) at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
PACKAGES = ("accounts", "polls", "pollstr", "tasks", "two_factor")
# Installed by requirements-dev.txt only.
DEV_ONLY = ("django_stubs_ext", "mypy", "pytest", "playwright")

PROGRAM = """
import importlib, os, pkgutil, sys
for name in {dev_only!r}:
    sys.modules[name] = None  # an import of it raises ImportError
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pollstr.settings")
import django
django.setup()
for package in {packages!r}:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if ".migrations." in info.name or info.name.endswith(".tests"):
            continue
        importlib.import_module(info.name)
print("ok")
"""


def test_every_module_imports_without_the_development_packages(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PROGRAM.format(dev_only=DEV_ONLY, packages=PACKAGES),
        ],
        cwd=BASE_DIR,
        env={
            "PATH": "/usr/bin:/bin",
            "POLLSTR_VAR_DIR": str(tmp_path),
            "SECRET_KEY": "runtime-dependencies-test",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
