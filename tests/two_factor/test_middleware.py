"""Enforcement: views declared protected (two_factor.protection) refuse unverified
sessions through their decorator or mixin; VerifiedSessionMiddleware only attaches
`request.is_verified()` and refuses nothing."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path, reverse
from django.views import View

from tests.clock import FakeClock
from tests.conftest import PASSWORD
from tests.phone_numbers import OTHER_NUMBER
from tests.two_factor.verifications import mark_session_verified
from two_factor.middleware import VerifiedSessionMiddleware
from two_factor.models import PhoneNumber
from two_factor.protection import VerifiedSessionRequiredMixin
from two_factor.session import session_verified_until

pytestmark = pytest.mark.usefixtures("two_factor_settings")

HTMX = {"HTTP_HX_REQUEST": "true"}


def _login_url(next_url: str) -> str:
    return redirect_to_login(next_url)["Location"]


def _start_url(next_url: str) -> str:
    return f"{reverse('two_factor:start')}?{urlencode({'next': next_url})}"


def _protected_pages(question) -> list[str]:
    return [
        reverse("polls:detail", args=[question.pk]),
        reverse("polls:results", args=[question.pk]),
    ]


# --- who may see a protected page -----------------------------------------------------------


@pytest.mark.parametrize("name", ["polls:detail", "polls:results"])
def test_an_anonymous_visitor_is_sent_to_login_with_next(client, question, name):
    url = reverse(name, args=[question.pk])

    response = client.get(url + "?tab=1")

    assert response.status_code == 302
    assert response["Location"] == _login_url(url + "?tab=1")
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("name", ["polls:detail", "polls:results"])
def test_an_unverified_voter_is_sent_to_verify_with_next(logged_in_client, question, name):
    url = reverse(name, args=[question.pk])

    response = logged_in_client.get(url)

    assert response.status_code == 302
    assert response["Location"] == _start_url(url)


@pytest.mark.parametrize("name", ["polls:detail", "polls:results"])
def test_a_verified_voter_sees_the_protected_page(voter_client, question, name):
    response = voter_client.get(reverse(name, args=[question.pk]))

    assert response.status_code == 200


def test_an_unverified_vote_is_not_counted(logged_in_client, question):
    choice = question.choices.first()

    response = logged_in_client.post(
        reverse("polls:vote", args=[question.pk]), {"choice": choice.pk}
    )

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("two_factor:start"))
    assert not question.votes.exists()


def test_a_verified_vote_is_counted(voter_client, question):
    choice = question.choices.first()

    response = voter_client.post(reverse("polls:vote", args=[question.pk]), {"choice": choice.pk})

    assert response["Location"] == reverse("polls:results", args=[question.pk])
    assert question.votes.count() == 1


def test_a_refused_post_comes_back_to_the_page_it_was_sent_from(logged_in_client, question):
    detail = reverse("polls:detail", args=[question.pk])

    response = logged_in_client.post(
        reverse("polls:vote", args=[question.pk]),
        {"choice": question.choices.first().pk},
        HTTP_REFERER=f"http://testserver{detail}",
    )

    # Not the vote URL itself: after verifying, a GET of it would only say 405.
    assert response["Location"] == _start_url(detail)


def test_a_refused_htmx_post_comes_back_to_the_current_page(logged_in_client, question):
    detail = reverse("polls:detail", args=[question.pk])

    response = logged_in_client.post(
        reverse("polls:vote", args=[question.pk]),
        {},
        HTTP_HX_CURRENT_URL=f"http://testserver{detail}?from=htmx",
        **HTMX,
    )

    assert response["HX-Redirect"] == _start_url(f"{detail}?from=htmx")


@pytest.mark.parametrize("referer", ["https://evil.example/polls/1/", "//evil.example/polls/1/"])
def test_a_foreign_referer_is_never_used_as_next(logged_in_client, question, referer):
    vote = reverse("polls:vote", args=[question.pk])

    response = logged_in_client.post(vote, {}, HTTP_REFERER=referer)

    assert "evil" not in response["Location"]


# --- ways a verified flag ends -----------------------------------------------------------------


def _flag_for_another_user(client: Client, user, make_user) -> None:
    mark_session_verified(client, make_user("bob"), OTHER_NUMBER)


def _flag_expired(client: Client, user, *, settings, clock: FakeClock) -> None:
    settings.TWO_FACTOR_VERIFIED_MAX_AGE = 60
    until = session_verified_until(session=client.session, user=user)
    assert until is not None
    clock.travel_to(until)


def _number_changed(client: Client, user, make_user) -> None:
    PhoneNumber.objects.filter(user=user).update(number=OTHER_NUMBER)


def _number_unverified(client: Client, user, make_user) -> None:
    PhoneNumber.objects.filter(user=user).update(verified_at=None)


def _password_changed(client: Client, user, make_user) -> None:
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "another-long-pass-2",
            "new_password2": "another-long-pass-2",
        },
    )
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == user.pk  # still logged in


def _logged_out_and_in(client: Client, user, make_user) -> None:
    client.post(reverse("logout"))
    client.force_login(user)


def _logged_in_again(client: Client, user, make_user) -> None:
    client.force_login(user)


FLAG_ENDINGS: list[Callable[..., None]] = [
    _flag_for_another_user,
    _number_changed,
    _number_unverified,
    _password_changed,
    _logged_out_and_in,
    _logged_in_again,
]


@pytest.mark.parametrize("end_flag", FLAG_ENDINGS, ids=lambda f: f.__name__.strip("_"))
def test_a_voter_whose_flag_ended_must_verify_again(
    voter_client, user, make_user, question, end_flag
):
    detail = reverse("polls:detail", args=[question.pk])
    assert voter_client.get(detail).status_code == 200

    end_flag(voter_client, user, make_user)

    response = voter_client.get(detail)
    assert response.status_code == 302
    assert response["Location"] == _start_url(detail)


def test_an_expired_flag_must_verify_again(voter_client, user, question, settings, clock):
    detail = reverse("polls:detail", args=[question.pk])
    assert voter_client.get(detail).status_code == 200

    _flag_expired(voter_client, user, settings=settings, clock=clock)

    response = voter_client.get(detail)
    assert response["Location"] == _start_url(detail)


# --- htmx ---------------------------------------------------------------------------------


def test_an_unverified_htmx_request_gets_a_client_redirect_not_a_302(logged_in_client, question):
    detail = reverse("polls:detail", args=[question.pk])

    response = logged_in_client.get(detail, **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == _start_url(detail)
    assert response.content == b""


def test_an_anonymous_htmx_request_gets_a_client_redirect_to_login(client, question):
    detail = reverse("polls:detail", args=[question.pk])

    response = client.get(detail, **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == _login_url(detail)


def test_a_verified_htmx_request_gets_the_page(voter_client, question):
    response = voter_client.get(reverse("polls:detail", args=[question.pk]), **HTMX)

    assert response.status_code == 200
    assert "HX-Redirect" not in response


# --- which pages are protected ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url_name", ["polls:index", "password_change", "two_factor:start", "two_factor:sandbox_inbox"]
)
def test_unprotected_pages_are_open_to_an_unverified_voter(logged_in_client, url_name):
    assert logged_in_client.get(reverse(url_name)).status_code == 200


@pytest.mark.parametrize("url_name", ["polls:index", "login", "signup"])
def test_unprotected_pages_are_open_to_anonymous_visitors(client, db, url_name):
    assert client.get(reverse(url_name)).status_code == 200


@pytest.mark.parametrize("client_name", ["logged_in_client", "voter_client"])
def test_without_the_middleware_a_protected_view_fails_closed(
    request, client_name, question, settings
):
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "two_factor.middleware.VerifiedSessionMiddleware"
    ]
    browser = request.getfixturevalue(client_name)
    browser.raise_request_exception = True

    with pytest.raises(ImproperlyConfigured, match="VerifiedSessionMiddleware"):
        browser.get(reverse("polls:detail", args=[question.pk]))


# --- the middleware attaches, never refuses ----------------------------------------------------


def _through_the_middleware(browser: Client, url: str) -> tuple[HttpResponse, HttpRequest]:
    """Pass a real request (session and user loaded) through VerifiedSessionMiddleware
    in front of a view that says nothing about protection."""
    seen: list[HttpRequest] = []

    def unmarked_view(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse("served")

    # A real request, its session and user loaded; what the middleware attached to it on
    # the way is taken off, so only the call below can put it back.
    request = browser.get(url).wsgi_request
    del request.is_verified  # type: ignore[attr-defined]
    response = VerifiedSessionMiddleware(unmarked_view)(request)
    return response, seen[0]


def test_the_middleware_lets_an_unverified_request_through_and_says_so(logged_in_client, question):
    response, request = _through_the_middleware(
        logged_in_client, reverse("polls:detail", args=[question.pk])
    )

    assert response.content == b"served"
    assert request.is_verified() is False  # type: ignore[attr-defined]


def test_the_middleware_attaches_the_answer_for_a_verified_session(voter_client, question):
    response, request = _through_the_middleware(
        voter_client, reverse("polls:detail", args=[question.pk])
    )

    assert response.content == b"served"
    assert request.is_verified() is True  # type: ignore[attr-defined]


def test_is_verified_answers_for_the_session_as_it_is_when_asked(voter_client, user, question):
    _, request = _through_the_middleware(voter_client, reverse("polls:index"))
    assert request.is_verified() is True  # type: ignore[attr-defined]

    PhoneNumber.objects.filter(user=user).update(verified_at=None)
    request.user.phone_number.refresh_from_db()

    assert request.is_verified() is False  # type: ignore[attr-defined]


def test_an_unknown_url_is_a_plain_404_for_anyone(client):
    assert client.get("/no-such-page/").status_code == 404


# --- VerifiedSessionRequiredMixin on a class-based view -------------------------------------


class SecretView(VerifiedSessionRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("the secret")

    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("posted")


urlpatterns = [
    path("secret/", SecretView.as_view(), name="secret"),
    path("accounts/", include("accounts.urls")),
    path("2fa/", include("two_factor.urls")),
    path("", include("polls.urls")),
]

mixin_urls = pytest.mark.urls(__name__)


@mixin_urls
def test_the_mixin_sends_an_anonymous_visitor_to_login(client):
    response = client.get("/secret/")

    assert response.status_code == 302
    assert response["Location"] == _login_url("/secret/")


@mixin_urls
def test_the_mixin_sends_an_unverified_voter_to_verify(logged_in_client):
    response = logged_in_client.get("/secret/?x=1")

    assert response.status_code == 302
    assert response["Location"] == _start_url("/secret/?x=1")


@mixin_urls
def test_the_mixin_lets_a_verified_voter_through(voter_client):
    response = voter_client.get("/secret/")

    assert response.status_code == 200
    assert response.content == b"the secret"


@mixin_urls
def test_the_mixin_answers_htmx_with_a_client_redirect(logged_in_client):
    response = logged_in_client.get("/secret/", **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == _start_url("/secret/")


@mixin_urls
def test_the_mixin_refuses_a_post_from_an_unverified_voter(logged_in_client):
    response = logged_in_client.post("/secret/", HTTP_REFERER="http://testserver/secret/")

    assert response.status_code == 302
    assert response["Location"] == _start_url("/secret/")


@mixin_urls
def test_the_mixin_notices_a_changed_number(voter_client, user):
    PhoneNumber.objects.filter(user=user).update(number=OTHER_NUMBER)

    response = voter_client.get("/secret/")

    assert response["Location"] == _start_url("/secret/")
