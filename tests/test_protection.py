"""Every view says whether it needs a phone-verified session: a polls view that is
neither protected nor explicitly open fails here, so nothing new is public by accident.
And every view marked protected, anywhere in the URLconf, refuses an unverified session
itself: the mark and the enforcement are one decorator (or mixin), and the middleware
enforces nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from two_factor.protection import is_declared_open, is_protected


def _patterns(resolver: URLResolver, namespace: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", entry


PATTERNS = sorted(_patterns(get_resolver()), key=lambda named: named[0])
POLLS_VIEWS = [(name, entry.callback) for name, entry in PATTERNS if name.startswith("polls:")]
PROTECTED_PATTERNS = [(name, entry) for name, entry in PATTERNS if is_protected(entry.callback)]


def test_the_walk_finds_the_polls_views():
    assert {name for name, _ in POLLS_VIEWS} >= {
        "polls:index",
        "polls:detail",
        "polls:vote",
        "polls:results",
    }


@pytest.mark.parametrize(("name", "view"), POLLS_VIEWS, ids=[name for name, _ in POLLS_VIEWS])
def test_every_polls_view_declares_whether_it_needs_a_verified_session(name, view):
    assert is_protected(view) != is_declared_open(view), (
        f"{name}: decorate it with @verified_session_required, or, if unverified sessions "
        "may see it, @verification_not_required"
    )


@pytest.mark.parametrize("name", ["polls:detail", "polls:vote", "polls:results"])
def test_the_voting_pages_are_protected(name):
    assert is_protected(dict(POLLS_VIEWS)[name])


def _url(name: str, entry: URLPattern, question: Any) -> str:
    # Every protected page today is a question's: its one argument is the question id.
    converters = getattr(entry.pattern, "converters", {})
    return reverse(name, kwargs={argument: question.pk for argument in converters})


def test_the_walk_finds_every_protected_page():
    assert {name for name, _ in PROTECTED_PATTERNS} >= {
        "polls:detail",
        "polls:vote",
        "polls:results",
    }


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    ("name", "entry"), PROTECTED_PATTERNS, ids=[name for name, _ in PROTECTED_PATTERNS]
)
def test_every_protected_view_sends_an_unverified_voter_to_verify(
    logged_in_client, question, name, entry, method
):
    url = _url(name, entry, question)

    response = getattr(logged_in_client, method)(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("two_factor:start") + "?next=")


@pytest.mark.parametrize(
    ("name", "entry"), PROTECTED_PATTERNS, ids=[name for name, _ in PROTECTED_PATTERNS]
)
def test_every_protected_view_sends_an_anonymous_visitor_to_login(client, question, name, entry):
    response = client.get(_url(name, entry, question))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_a_new_undeclared_view_would_fail_the_walk():
    def undeclared(request):  # what someone adds without thinking about protection
        return None

    assert not is_protected(undeclared)
    assert not is_declared_open(undeclared)
