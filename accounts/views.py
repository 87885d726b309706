from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from pollstr.client_ip import client_ip, client_network
from pollstr.safe_redirect import safe_next_url
from two_factor.limits import RateLimited, throttle_check, throttle_hit
from two_factor.protection import first_stop


@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.user.is_authenticated:
        return redirect(safe_next_url(request, next_url, reverse("polls:index")))
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST":
        # New accounts per address and per network: fresh accounts are how SMS pumping
        # gets its codes. Counted only when an account is made; a full limit refuses
        # before the form is even checked.
        ip = client_ip(request)
        events = [("signup_per_ip", ip or "unknown"), ("signup_per_network", client_network(ip))]
        try:
            throttle_check(events=events)
            if form.is_valid():
                throttle_hit(events=events)
                user = form.save()
                login(request, user, backend="accounts.backends.AccountBackend")
                messages.success(
                    request,
                    gettext("Welcome, %(name)s! Your account is ready.")
                    % {"name": user.get_username()},
                )
                return redirect(
                    first_stop(request, safe_next_url(request, next_url, reverse("polls:index")))
                )
        except RateLimited as limited:
            # Bound without the passwords, so the page keeps the name and nothing else.
            form = UserCreationForm(data={"username": request.POST.get("username", "")})
            form.errors.clear()
            form.add_error(
                None,
                gettext("Too many new accounts from your network. Try again in %(wait)s.")
                % {"wait": limited.wait},
            )
            response = render(
                request, "registration/signup.html", {"form": form, "next": next_url}, status=429
            )
            response["Retry-After"] = str(limited.retry_after)
            return response
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


class LoginView(auth_views.LoginView):
    """Django's login, throttled, with `next` decided by the project's one rule
    (pollstr.safe_redirect: Django's own check lets a bare word through as a URL).

    Failed sign-ins count per username and per client address through the project's one
    limiter; once either is full, the password is not even evaluated until the window
    slides on, and the page says when to try again.
    """

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            throttle_check(events=self._throttle_keys())
        except RateLimited as limited:
            return self._refuse(limited)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        try:
            throttle_hit(events=self._throttle_keys())
        except RateLimited as limited:
            return self._refuse(limited)
        return super().form_invalid(form)

    def _throttle_keys(self) -> list[tuple[str, str]]:
        username = (self.request.POST.get("username") or "").strip().casefold()[:150]
        return [
            ("login_failures_per_username", username),
            ("login_failures_per_ip", client_ip(self.request) or "unknown"),
        ]

    def _refuse(self, limited: RateLimited) -> HttpResponse:
        # Bound without the password, so validating it never reaches authenticate().
        form = self.get_form_class()(
            self.request, data={"username": self.request.POST.get("username", "")}
        )
        form.errors.clear()
        form.add_error(
            None,
            gettext("Too many sign-in attempts. Try again in %(wait)s.") % {"wait": limited.wait},
        )
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(limited.retry_after)
        return response

    def get_success_url(self) -> str:
        # A protected page would only redirect an unverified session to the number page.
        return first_stop(self.request, super().get_success_url())

    def get_redirect_url(self, request: HttpRequest | None = None) -> str:
        candidate = self.request.POST.get(self.redirect_field_name) or self.request.GET.get(
            self.redirect_field_name
        )
        return safe_next_url(self.request, candidate, "")
