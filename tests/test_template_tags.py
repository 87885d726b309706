"""pollstr.template_tags: ``{% per_language %}`` renders once per language, sees nothing
of the request, and the pages that share its text still carry their own request's parts;
``autofocused`` renders a field as ``{{ field }}`` does, with ``autofocus``."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django import forms, urls
from django.contrib.auth.models import AbstractBaseUser
from django.template import TemplateSyntaxError, engines
from django.test import Client, override_settings
from django.utils import translation


def _template(source: str):  # type: ignore[no-untyped-def]
    return engines["django"].from_string("{% load i18n static pollstr %}" + source)


def test_the_text_is_rendered_once_per_language() -> None:
    page = _template(
        "{% per_language %}{% url 'login' %} {% translate 'Log in' %}{% endper_language %}"
    )

    with mock.patch.object(urls, "reverse", wraps=urls.reverse) as reverse:
        with translation.override("en"):
            first, again = page.render({}), page.render({})
        with translation.override("fr"):
            french = page.render({})
        with translation.override("en"):
            last = page.render({})

    assert first == again == last == "/accounts/login/ Log in"
    assert french == "/accounts/login/ Se connecter"
    assert reverse.call_count == 2  # once in English, once in French


def test_nothing_of_the_request_reaches_the_shared_text() -> None:
    page = _template("[{% per_language %}{{ secret }}{% endper_language %}]{{ secret }}")

    with translation.override("en"):
        assert page.render({"secret": "alice's"}) == "[]alice&#x27;s"


def test_a_changed_setting_renders_the_text_again() -> None:
    page = _template("{% per_language %}{% static 'pollstr/site.css' %}{% endper_language %}")
    with translation.override("en"):
        before = page.render({})
        with override_settings(STATIC_URL="/elsewhere/"):
            during = page.render({})
        after = page.render({})

    assert before == after == "/static/pollstr/site.css"
    assert during == "/elsewhere/pollstr/site.css"


def test_the_tag_takes_no_arguments() -> None:
    with pytest.raises(TemplateSyntaxError, match="no arguments"):
        _template("{% per_language 'x' %}{% endper_language %}")


@pytest.mark.django_db
def test_each_page_keeps_its_own_user_and_token(make_user) -> None:  # type: ignore[no-untyped-def]
    pages = []
    for name in ("alice", "bob"):
        client = Client(HTTP_ACCEPT_LANGUAGE="fr")
        user: AbstractBaseUser = make_user(username=name)
        client.force_login(user)
        pages.append(client.get("/accounts/").content.decode())

    tokens = [re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page) for page in pages]
    assert all(tokens)
    assert set(tokens[0]).isdisjoint(tokens[1])
    assert "<strong>alice</strong>" in pages[0]
    assert "<strong>bob</strong>" in pages[1]
    assert "alice" not in pages[1]
    for page in pages:
        assert "Se déconnecter" in page
        assert 'lang="fr"' in page


def _attributes(html: str) -> dict[str, str]:
    """An <input>'s attributes, whatever their order."""
    tag = re.fullmatch(r"\s*<input ([^>]*)>\s*", html)
    assert tag, html
    return dict(re.findall(r'([\w-]+)(?:="([^"]*)")?', tag.group(1)))


class _Form(forms.Form):
    number = forms.CharField(max_length=32, help_text="Your mobile number")
    size = forms.ChoiceField(choices=[("s", "S"), ("l", "L")], widget=forms.RadioSelect)


@pytest.mark.parametrize("data", [None, {"number": ""}], ids=["unbound", "with an error"])
def test_an_autofocused_field_is_the_field_with_autofocus(data: dict[str, str] | None) -> None:
    form = _Form(data=data)
    if data is not None:
        form.full_clean()  # the field's error is what aria-invalid and the describedby name
    field = form["number"]

    focused = _attributes(_template("{{ field|autofocused }}").render({"field": field}))
    plain = _attributes(_template("{{ field }}").render({"field": field}))

    assert "autofocus" not in plain
    assert focused == {**plain, "autofocus": ""}
    assert focused["aria-describedby"] == (
        "id_number_helptext id_number_error" if data is not None else "id_number_helptext"
    )
    assert ("aria-invalid" in focused) == (data is not None)


def test_a_field_of_several_inputs_gets_no_autofocus() -> None:
    field = _Form()["size"]

    rendered = _template("{{ field|autofocused }}").render({"field": field})

    assert rendered == _template("{{ field }}").render({"field": field})
    assert rendered.count('type="radio"') == 2
    assert "autofocus" not in rendered
