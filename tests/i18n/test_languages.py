"""In the voter's language (#16, part 6): the language switch, pages in French and
Spanish, Verify's locale following the voter, and sentences stored in English shown in
each reader's language."""

from __future__ import annotations

import html
import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import resolve, reverse
from django.utils import translation

from pollstr.languages import VERIFY_LOCALES, language_codes, scope_language, verify_locale
from tests.phone_numbers import NUMBER
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import Status, Verification
from two_factor.outcomes import OUTCOMES

SET_LANGUAGE = "/i18n/setlang/"
START = "/2fa/"


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _verification_from(response) -> Verification:
    match = resolve(response["Location"])
    return Verification.objects.get(pk=match.kwargs["verification_id"])


# --- the switch --------------------------------------------------------------------------


def test_every_page_header_offers_the_language_switch(client: Client, db: None) -> None:
    page = client.get("/?a=1")
    switch = re.search(
        r'<form action="/i18n/setlang/" method="post"[^>]*>.*?</form>', _text(page), re.S
    )

    assert switch, "no language switch in the header"
    form = switch.group(0)
    assert 'name="csrfmiddlewaretoken"' in form
    assert '<input name="next" type="hidden" value="/?a=1">' in form
    assert '<label for="id_language" class="visually-hidden">Language</label>' in form
    # Each language named in itself, the current one chosen.
    assert '<option value="en" lang="en" selected>English</option>' in form
    assert '<option value="fr" lang="fr">Français</option>' in form
    assert '<option value="es" lang="es">Español</option>' in form


def test_switching_to_french_sets_the_cookie_and_goes_back(client: Client, db: None) -> None:
    response = client.post(SET_LANGUAGE, {"language": "fr", "next": "/accounts/login/"})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"
    page = client.get("/accounts/login/")
    assert '<html lang="fr">' in page.content.decode()
    assert "<h1>Se connecter</h1>" in _text(page)


def test_the_switch_never_sends_anyone_off_the_site(client: Client, db: None) -> None:
    response = client.post(SET_LANGUAGE, {"language": "es", "next": "https://evil.example/"})

    assert response.status_code == 302
    assert not response["Location"].startswith("https://evil.example")


def test_a_language_the_site_lacks_is_refused(client: Client, db: None) -> None:
    response = client.post(SET_LANGUAGE, {"language": "xx", "next": "/"})

    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies


# --- pages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "lang", "heading"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.5", "fr", "<h1>Sondages</h1>"),
        ("es-ES,es;q=0.9", "es", "<h1>Encuestas</h1>"),
        ("de-DE,de;q=0.9", "en", "<h1>Polls</h1>"),
    ],
)
def test_a_browser_gets_its_own_language_or_english(
    client: Client, db: None, accept: str, lang: str, heading: str
) -> None:
    page = client.get("/", HTTP_ACCEPT_LANGUAGE=accept)

    assert f'<html lang="{lang}">' in page.content.decode()
    assert heading in _text(page)
    assert page["Content-Language"] == lang


def test_a_french_voter_reads_the_code_page_in_french(
    eager_tasks, logged_in_client: Client, user, post
) -> None:
    logged_in_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "fr"

    verification = _verification_from(post(logged_in_client, START, {"number": NUMBER}))
    page = _text(logged_in_client.get(reverse("two_factor:verify", args=[verification.pk])))

    assert verification.status == Status.SENT
    assert "Saisissez votre code" in page  # the heading
    assert "Nous avons envoyé un code par SMS au" in page  # the status line (the sms row)
    assert "Appelez-moi plutôt" in page
    assert "Demande reçue" in page  # the timeline
    assert "Enter your code" not in page


def test_a_refusal_is_said_in_the_voters_language(
    eager_tasks, logged_in_client: Client, post
) -> None:
    logged_in_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "es"

    response = post(logged_in_client, START, {"number": "+33 1 23 45 67 89"})  # a landline

    assert response.status_code == 400
    assert "Parece un fijo, que no puede recibir SMS." in _text(response)


def test_an_error_page_speaks_the_visitors_language(client: Client, db: None) -> None:
    page = client.get("/no-such-page/", HTTP_ACCEPT_LANGUAGE="fr")

    assert page.status_code == 404
    assert "Page introuvable" in _text(page)


# --- Verify's locale follows the voter -----------------------------------------------------


@pytest.mark.parametrize(
    ("language", "locale"), [("en", "en-us"), ("fr", "fr-fr"), ("es", "es-es")]
)
def test_the_code_is_sent_in_the_voters_language(
    eager_tasks, logged_in_client: Client, post, language: str, locale: str
) -> None:
    logged_in_client.cookies[settings.LANGUAGE_COOKIE_NAME] = language

    verification = _verification_from(post(logged_in_client, START, {"number": NUMBER}))

    assert verification.locale == language
    [message] = sandbox_messages_for(NUMBER)
    assert message["locale"] == locale


def test_every_language_has_a_verify_locale() -> None:
    assert set(language_codes()) <= set(VERIFY_LOCALES)
    assert verify_locale("fr-ca") == "fr-fr"
    assert verify_locale("de") == "en-us"  # not ours: English


@pytest.mark.parametrize(
    ("cookies", "accept", "language"),
    [
        ({"django_language": "es"}, b"fr", "es"),  # the switch's choice wins
        ({}, b"fr-CA,fr;q=0.8", "fr"),
        ({}, b"de", "en"),
        ({}, None, "en"),
    ],
)
def test_a_websocket_speaks_what_locale_middleware_would_choose(
    cookies: dict[str, str], accept: bytes | None, language: str
) -> None:
    headers = [(b"accept-language", accept)] if accept else []

    assert scope_language({"cookies": cookies, "headers": headers}) == language


# --- stored sentences ------------------------------------------------------------------------


def test_a_stored_failure_is_english_and_read_in_each_readers_language(
    make_verification, logged_in_client: Client, user
) -> None:
    from tests.two_factor.verifications import client_session_key

    expired = OUTCOMES["expired"].sentence
    verification = make_verification(
        Status.EXPIRED,
        session_key=client_session_key(logged_in_client),
        failure_reason=expired,
    )
    url = reverse("two_factor:verify", args=[verification.pk])

    assert Verification.objects.get(pk=verification.pk).failure_reason == (
        "This code has expired. Ask for a new code."
    )
    assert "Ce code a expiré. Demandez un nouveau code." in _text(
        logged_in_client.get(url, HTTP_ACCEPT_LANGUAGE="fr")
    )
    assert "This code has expired. Ask for a new code." in _text(
        logged_in_client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    )


def test_the_default_language_stays_english() -> None:
    assert settings.LANGUAGE_CODE == "en"
    assert translation.get_language() == "en"


def test_a_task_stores_sentences_in_english_whichever_thread_runs_it() -> None:
    """An eager task runs in the French request's thread: what it stores (a governor's
    refusal, say) must still be the catalogues' English source."""
    from tasks.verification import _deliver

    said: list[str] = []
    with translation.override("fr"):
        _deliver(
            object(),  # type: ignore[arg-type]  # (only read when the work fails)
            lambda: said.append(translation.gettext("Enter your code")),
        )
        assert translation.get_language() == "fr"  # the request's language is back

    assert said == ["Enter your code"]
