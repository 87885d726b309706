"""``{% load pollstr %}``: template tags of the project's own pages (base.html).

``{% per_language %}…{% endper_language %}`` renders what it encloses once per process
and active language, then hands out that text. The frame every page shares (the head's
links and scripts, the translated notices live.js reads, the navigation's links, the
language list, the footer) is the same for every request in a language, and rendering
it through the template engine was ~2 ms of CPU per page (``benchmarks/flow_cost.py``).

What it encloses is rendered in an empty context, so it can depend on nothing but the
language and the settings: a variable inside renders as nothing, which a test of the
page would show. Anything per request (the CSRF token, the user, the path) stays
outside. The texts are dropped when a setting changes (tests override settings) and
whenever the template is loaded again (the cached loader's reset, a deploy).

``{{ field|autofocused }}``: a form's first field with ``autofocus``
(templates/includes/form_fields.html).
"""

from __future__ import annotations

from typing import Any

from django import forms, template
from django.core.signals import setting_changed
from django.utils.safestring import SafeString
from django.utils.translation import get_language

register = template.Library()

_generation = 0


def _settings_changed(**kwargs: Any) -> None:
    global _generation
    _generation += 1


setting_changed.connect(_settings_changed)


class PerLanguageNode(template.Node):
    def __init__(self, nodelist: template.NodeList) -> None:
        self.nodelist = nodelist
        self.rendered: dict[tuple[int, str | None], SafeString] = {}

    def render(self, context: template.Context) -> str:
        key = (_generation, get_language())
        text = self.rendered.get(key)
        if text is None:
            text = self.nodelist.render(context.new())  # the engine's: already safe
            if len(self.rendered) > 64:  # settings changed many times (a test run)
                self.rendered.clear()
            self.rendered[key] = text
        return text


@register.tag
def per_language(parser: template.base.Parser, token: template.base.Token) -> PerLanguageNode:
    if len(token.split_contents()) != 1:
        raise template.TemplateSyntaxError("per_language takes no arguments")
    nodelist = parser.parse(("endper_language",))
    parser.delete_first_token()
    return PerLanguageNode(nodelist)


@register.filter
def autofocused(field: forms.BoundField) -> SafeString:
    """The field's widget as ``{{ field }}`` renders it (Django's widget template, its
    ``aria-*`` and ``required`` attributes), with ``autofocus``: what a page's first field
    needs, which a template cannot add to a widget's attributes. A widget of several
    inputs (radio buttons, check boxes, a multi-widget) is rendered as it is: no one of
    them is the field's."""
    if isinstance(field.field.widget, (forms.RadioSelect, forms.MultiWidget)):
        return field.as_widget()
    return field.as_widget(attrs={"autofocus": True})
