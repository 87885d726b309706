"""The offline default gateway: an emulator of Vonage Verify (``emulator``), the store it
and the dev inbox live in (``store``), the gateway itself (``gateway``) and the signed
callbacks it posts to our own webhook (``callbacks``)."""

from __future__ import annotations

from .gateway import (
    SandboxGateway,
    sandbox_fail_next,
    sandbox_inbox,
    sandbox_inbox_clear,
    sandbox_messages_for,
    sandbox_store,
)

__all__ = [
    "SandboxGateway",
    "sandbox_fail_next",
    "sandbox_inbox",
    "sandbox_inbox_clear",
    "sandbox_messages_for",
    "sandbox_store",
]
