"""The form renderer (``FORM_RENDERER``): Django's own, with its ``<input>`` widgets
written in Python.

Every page with a form renders its inputs through Django's widget templates: the
widget's template includes ``django/forms/widgets/input.html``, which includes
``attrs.html`` and loops over the attributes. That is three template renders for one
tag, 0.3–0.6 ms a field, a quarter of the sign-in page's CPU (docs/ARCHITECTURE.md,
"Form inputs are written in Python"). Here the same tag is built by :func:`input_tag`,
character for character what those templates produce (tests/test_form_renderer.py
renders every widget of every form both ways and compares).

Only templates that are still Django's own are taken over: if an app or the project
overrides ``input.html``, ``attrs.html`` or one widget's template, that widget renders
through the templates as before (checked once per template name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import django.forms
from django.forms.renderers import DjangoTemplates
from django.utils.html import escape
from django.utils.safestring import SafeData, SafeString, mark_safe

__all__ = ["FormRenderer", "input_tag"]

_DJANGO_TEMPLATES = Path(django.forms.__file__).parent / "templates"
_INPUT = "django/forms/widgets/input.html"
_ATTRS = "django/forms/widgets/attrs.html"
# The widget templates that are nothing but {% include "django/forms/widgets/input.html" %}
# in Django (tests/test_form_renderer.py checks that they still are).
INPUT_TEMPLATES = frozenset(
    f"django/forms/widgets/{kind}.html"
    for kind in (
        "checkbox",
        "color",
        "date",
        "datetime",
        "email",
        "file",
        "hidden",
        "number",
        "password",
        "search",
        "tel",
        "text",
        "time",
        "url",
    )
)


def _text(value: Any) -> str:
    """``{{ value|stringformat:'s' }}`` under autoescaping: safe text kept, the rest
    escaped (the filter's output is plain text unless its input was safe)."""
    if isinstance(value, SafeData):
        return str(value)
    return escape(str(value))


def input_tag(widget: dict[str, Any]) -> SafeString:
    """What ``input.html`` renders for a widget's template context."""
    parts = [f'<input type="{_text(widget["type"])}" name="{_text(widget["name"])}"']
    if widget["value"] is not None:
        parts.append(f' value="{_text(widget["value"])}"')
    for name, value in widget["attrs"].items():
        if value is False:
            continue
        parts.append(f" {_text(name)}" if value is True else f' {_text(name)}="{_text(value)}"')
    parts.append(">")
    return mark_safe("".join(parts))  # noqa: S308 (every part above is escaped)


class FormRenderer(DjangoTemplates):
    """Django's template form renderer; Django's own input widget templates in Python."""

    def __init__(self) -> None:
        super().__init__()
        self._stock: dict[str, bool] = {}

    def render(self, template_name: str, context: dict[str, Any], request: Any = None) -> str:
        if template_name in INPUT_TEMPLATES and self._is_stock(template_name):
            return input_tag(context["widget"])
        return super().render(template_name, context, request)

    def _is_stock(self, template_name: str) -> bool:
        stock = self._stock.get(template_name)
        if stock is None:
            stock = all(
                Path(self.get_template(name).origin.name).is_relative_to(_DJANGO_TEMPLATES)
                for name in (template_name, _INPUT, _ATTRS)
            )
            self._stock[template_name] = stock
        return stock
