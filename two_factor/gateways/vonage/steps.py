"""How the Vonage gateway sends each channel: the SDK's workflow step models, built from
a step's ``to`` and ``params`` (``gateways.base.WorkflowStep``). The channel table
(``two_factor/channels.py``) names one of these per channel as its ``sends_with["vonage"]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import field_validator
from vonage_verify import SilentAuthChannel, SmsChannel, VoiceChannel, WhatsappChannel

# Verify's sender: E.164 digits without '+', or 3-11 alphanumerics (a registered name).
_SENDER = re.compile(r"^([1-9]\d{6,14}|[A-Za-z0-9]{3,11})$")


class WhatsappStep(WhatsappChannel):
    """The SDK's WhatsApp step (vonage-verify 2.2) with a sender check that works.

    Its own validator compares ``type(v)`` with an ``Annotated`` alias, which a ``str``
    never is, so any sender longer than 11 characters (every E.164 number past 11
    digits: 447700900001) is refused before the request is made. Verify itself takes an
    E.164 number there; this check accepts what Verify accepts.
    """

    @field_validator("from_")
    @classmethod
    def check_valid_sender(cls, v: Any) -> Any:
        if not isinstance(v, str) or not _SENDER.match(v):
            raise ValueError(
                "from must be a WhatsApp Business number in E.164 without '+', "
                f"or 3-11 letters and digits; got {v!r}"
            )
        return v


def sms(to: str, params: Mapping[str, Any]) -> SmsChannel:
    return SmsChannel(to=to)


def voice(to: str, params: Mapping[str, Any]) -> VoiceChannel:
    return VoiceChannel(to=to)


def whatsapp(to: str, params: Mapping[str, Any]) -> WhatsappStep:
    return WhatsappStep(to=to, from_=params.get("from"))


def silent_auth(to: str, params: Mapping[str, Any]) -> SilentAuthChannel:
    return SilentAuthChannel(to=to, redirect_url=params.get("redirect_url"))
