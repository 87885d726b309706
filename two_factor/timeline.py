"""What the voter sees of a verification: the steps so far, in the product's words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from two_factor.models import Status, Verification

STEPS: list[tuple[str, str]] = [
    (Status.QUEUED, "Request received"),
    (Status.SENDING, "Sending your code"),
    (Status.SENT, "Sent by SMS"),
    (Status.CALLING, "Calling you with the code"),
    (Status.VERIFIED, "Verified"),
]
_ORDER = [status for status, _ in STEPS]


@dataclass(frozen=True)
class Step:
    status: str
    label: str
    state: str  # "done", "current", "failed" or "todo"
    at: datetime | None


def verification_timeline(verification: Verification) -> list[Step]:
    reached: dict[str, datetime] = {}
    for event in verification.events.all():
        reached.setdefault(event.to_status, event.created_at)
    current = verification.status
    if current == Status.CHECKING:
        current = Status.CALLING if verification.channel == "voice" else Status.SENT
    if current == Status.CONSUMED:
        current = Status.VERIFIED
    ended_badly = current in (Status.FAILED, Status.EXPIRED, Status.CANCELLED)
    steps = []
    for status, label in STEPS:
        at = reached.get(status)
        if (
            status == Status.CALLING
            and at is None
            and not ended_badly
            and current != Status.CALLING
        ):
            continue  # the call step shows only once it happens
        if status == current:
            state = "done" if status == Status.VERIFIED else "current"
        elif at is not None:
            state = "done"
        else:
            state = "todo"
        steps.append(Step(status=status, label=label, state=state, at=at))
    if ended_badly:
        label = {
            Status.FAILED.value: "Failed",
            Status.EXPIRED.value: "Expired",
            Status.CANCELLED.value: "Cancelled",
        }[current]
        steps = [step for step in steps if step.at is not None]
        steps.append(Step(status=current, label=label, state="failed", at=reached.get(current)))
    return steps
