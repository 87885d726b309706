from __future__ import annotations

from tests.fakes.verify_server import fake_verify

__all__ = ["fake_verify"]
