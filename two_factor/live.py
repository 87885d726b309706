"""Publishing verification state to the live page (wired by the live-status work)."""

from __future__ import annotations

from uuid import UUID


def verification_group(verification_id: UUID | str) -> str:
    return f"verification-{UUID(str(verification_id)).hex}"


def verification_publish(*, verification_id: UUID) -> None:
    """Push the rendered status partial to the verification's group."""
