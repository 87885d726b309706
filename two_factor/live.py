"""Live status: every transition pings the verification's group; each connected page
re-renders the status partial for its own user and session (so forms carry that
browser's CSRF token) and receives it as an out-of-band swap."""

from __future__ import annotations

from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def verification_group(verification_id: UUID | str) -> str:
    return f"verification-{UUID(str(verification_id)).hex}"


def verification_publish(*, verification_id: UUID | str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        verification_group(verification_id), {"type": "verification.changed"}
    )
