"""pollstr.form_renderer: every ``<input>`` it writes in Python is, character for character,
what Django's widget templates write; and a widget template the project overrides is
rendered by the template, as before."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, UserCreationForm
from django.contrib.auth.models import User
from django.forms.renderers import DjangoTemplates, get_default_renderer
from django.test import override_settings
from django.utils import translation
from django.utils.functional import cached_property
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from accounts.forms import PasswordConfirmForm
from pollstr.form_renderer import INPUT_TEMPLATES, FormRenderer
from two_factor.forms import CodeForm, PhoneNumberForm

STOCK = DjangoTemplates()
OURS = FormRenderer()

HOSTILE = "he said \"hi\" & <script>alert('x')</script> é \u202e"

VALUES: list[Any] = [
    None,
    "",
    "plain",
    HOSTILE,
    mark_safe("<b>already safe</b> &amp;"),
    12,
    1.5,
    datetime.date(2026, 12, 8),
    datetime.datetime(2026, 12, 8, 1, 2, 3),
    datetime.time(1, 2, 3),
]

ATTRS: list[dict[str, Any]] = [
    {},
    {"required": True, "disabled": False, "maxlength": 16, "step": 0.5},
    {"placeholder": HOSTILE, "data-x": mark_safe("&amp; <i>"), "aria-describedby": "a b"},
    {"placeholder": gettext_lazy("Mobile number"), "title": gettext_lazy("Log in")},
    {"none": None, "tuple": (1, 2), "list": [1, "<"], "class": "code-input", "autofocus": True},
]

WIDGETS: list[forms.Widget] = [
    forms.TextInput(),
    forms.PasswordInput(render_value=True),
    forms.PasswordInput(),
    forms.HiddenInput(),
    forms.NumberInput(),
    forms.EmailInput(),
    forms.URLInput(),
    forms.DateInput(),
    forms.DateTimeInput(),
    forms.TimeInput(),
    forms.CheckboxInput(),
    forms.FileInput(),
    forms.ColorInput(),
    forms.SearchInput(),
    forms.TelInput(),
]


def test_the_project_renders_forms_with_it() -> None:
    assert isinstance(get_default_renderer(), FormRenderer)
    assert settings.FORM_RENDERER == "pollstr.form_renderer.FormRenderer"


@pytest.mark.parametrize("template_name", sorted(INPUT_TEMPLATES))
def test_each_template_taken_over_is_only_djangos_input(template_name: str) -> None:
    # If a Django upgrade gives one of these more than input.html, it must leave the list.
    source = STOCK.get_template(template_name).template.source.strip()
    assert source == '{% include "django/forms/widgets/input.html" %}'


def test_every_input_widget_template_is_taken_over() -> None:
    assert {widget.template_name for widget in WIDGETS} == INPUT_TEMPLATES


@pytest.mark.parametrize("language", ["en", "fr", "es"])
@pytest.mark.parametrize("widget", WIDGETS, ids=lambda widget: type(widget).__name__)
def test_a_widget_renders_as_djangos_templates_render_it(
    widget: forms.Widget, language: str
) -> None:
    compared = 0
    with translation.override(language):
        for value in VALUES:
            for attrs in ATTRS:
                ours = widget.render("field", value, attrs=attrs, renderer=OURS)
                stock = widget.render("field", value, attrs=attrs, renderer=STOCK)
                assert ours == stock, (value, attrs)
                assert ours.startswith("<input ")
                compared += 1
    assert compared == len(VALUES) * len(ATTRS)


def _project_forms(data: dict[str, str] | None, user: User) -> list[forms.Form]:
    kwargs: dict[str, Any] = {"data": data}
    return [
        PhoneNumberForm(**kwargs),
        CodeForm(**kwargs),
        PasswordConfirmForm(user=user, **kwargs),
        AuthenticationForm(None, **kwargs),
        UserCreationForm(**kwargs),
        PasswordChangeForm(user, **kwargs),
    ]


@pytest.mark.django_db  # UserCreationForm's validation asks whether the username is taken
@override_settings(TWO_FACTOR_REMEMBER_DAYS=30)
@pytest.mark.parametrize(
    "data",
    [None, {}, {"number": HOSTILE, "code": HOSTILE, "username": HOSTILE, "password": HOSTILE}],
    ids=["unbound", "empty (errors)", "hostile"],
)
def test_every_field_of_every_form_renders_as_before(data: dict[str, str] | None) -> None:
    user = User(username="someone")
    fields = 0
    for form in _project_forms(data, user):
        for bound in form:
            form.renderer = OURS
            ours = str(bound.as_widget())
            form.renderer = STOCK
            assert ours == str(bound.as_widget()), (type(form).__name__, bound.name)
            fields += 1
    assert fields >= 10


def _overriding(tmp_path: Path, overrides: dict[str, str]) -> FormRenderer:
    for name, source in overrides.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)

    class Overridden(FormRenderer):
        @cached_property
        def engine(self) -> Any:
            engine = super().engine
            engine.engine.dirs = [str(tmp_path), *engine.engine.dirs]
            return engine

    return Overridden()


def test_an_overridden_widget_template_is_rendered_by_the_template(tmp_path: Path) -> None:
    renderer = _overriding(tmp_path, {"django/forms/widgets/text.html": "<x-text>"})
    assert forms.TextInput().render("f", "v", renderer=renderer) == "<x-text>"
    # The other inputs are still Django's own.
    password = forms.PasswordInput(render_value=True)
    assert password.render("f", "v", renderer=renderer) == password.render("f", "v", renderer=STOCK)


def test_an_overridden_input_template_is_rendered_by_the_template(tmp_path: Path) -> None:
    renderer = _overriding(
        tmp_path, {"django/forms/widgets/input.html": "<x-input {{ widget.name }}>"}
    )
    for widget in WIDGETS:
        assert widget.render("f", "v", renderer=renderer) == "<x-input f>"
