"""The voter's language: which of LANGUAGES a request or a websocket speaks, and the
Verify ``locale`` that sends their SMS and call in it.

LocaleMiddleware decides a request's language (the language switch's cookie, else the
browser's Accept-Language, else LANGUAGE_CODE); a websocket has no request, so its
handshake is asked the same way (`scope_language`), and live fragments are rendered
once per language whose pages are listening (two_factor.live, polls.live).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation

# Verify v2's `locale` for each of our languages (its SMS and voice wording; default
# en-us). A language without an entry here sends English; tests/test_languages.py
# fails when LANGUAGES has one this table lacks.
VERIFY_LOCALES: dict[str, str] = {"en": "en-us", "fr": "fr-fr", "es": "es-es"}


def language_codes() -> list[str]:
    """The site's languages, the default first."""
    codes = [code for code, _name in settings.LANGUAGES]
    default = supported_language(settings.LANGUAGE_CODE)
    return [default, *(code for code in codes if code != default)]


def supported_language(code: str | None) -> str:
    """`code` as one of LANGUAGES ("fr-ca" -> "fr"), or the default language."""
    if code:
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            pass
    return translation.get_supported_language_variant(settings.LANGUAGE_CODE)


def request_language(request: HttpRequest) -> str:
    """The language LocaleMiddleware chose for this request."""
    return supported_language(getattr(request, "LANGUAGE_CODE", None))


def scope_language(scope: Mapping[str, Any]) -> str:
    """The language LocaleMiddleware would choose for this websocket's handshake: the
    switch's cookie, else Accept-Language, else the default."""
    request = HttpRequest()
    request.COOKIES = dict(scope.get("cookies") or {})
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language")
    if accept:
        request.META["HTTP_ACCEPT_LANGUAGE"] = accept.decode("latin-1")
    return supported_language(translation.get_language_from_request(request))


def verify_locale(language: str | None) -> str:
    """Verify's `locale` for one of our languages (en-us for anything unknown)."""
    return VERIFY_LOCALES.get(supported_language(language), VERIFY_LOCALES["en"])


def language_group(group: str, language: str | None) -> str:
    """The channel group of `group`'s pages in `language` ("verification-<id>.fr"): live
    fragments are rendered once per language whose group has members."""
    return f"{group}.{supported_language(language)}"


class Listening(NamedTuple):
    """A language whose pages are open: its group, and the group's members when the
    channel layer listed them (for `pollstr.channel_layers.group_send`)."""

    language: str
    group: str
    members: list[str] | None


def languages_listening(group_of: Callable[[str], str]) -> list[Listening]:
    """Each language whose group (``group_of(language)``) has members now, in one round
    trip: what a publisher renders, once each. None at all while no page is open."""
    from pollstr.channel_layers import groups_listening

    groups = {group_of(code): code for code in language_codes()}
    return [
        Listening(groups[group], group, members)
        for group, members in groups_listening(list(groups))
    ]
