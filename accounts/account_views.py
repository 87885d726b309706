"""The account page (with its remembered devices, two_factor/services/devices.py),
"Download my data" and "Delete my account" (accounts/services.py).

Both actions ask for the password again (accounts/forms.py); wrong passwords count
against the same limits as failed sign-ins, so this form is no way around them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.forms import PasswordConfirmForm
from accounts.services import account_erase, account_export
from polls.models import Vote
from pollstr.client_ip import client_ip
from two_factor import services as two_factor_services
from two_factor.device_cookie import device_cookie_delete, device_cookie_token
from two_factor.limits import RateLimited, limit_check, limits_hit
from two_factor.models import PhoneNumber, TrustedDevice
from two_factor.services.devices import FORGOTTEN


class AccountRequest(HttpRequest):
    """A request on a login_required view: a signed-in user."""

    user: User
    is_verified: Callable[[], bool]  # two_factor.middleware


def _throttle_keys(request: AccountRequest) -> list[tuple[str, str]]:
    return [
        ("login_failures_per_username", request.user.get_username().casefold()[:150]),
        ("login_failures_per_ip", client_ip(request) or "unknown"),
    ]


def _unless_password_confirmed(request: AccountRequest, template: str) -> HttpResponse | None:
    """None when the POST carries the right password; otherwise the page to answer with:
    the form (GET, or a wrong password: 400), or a refusal (429)."""
    posted = request.method == "POST"
    form = PasswordConfirmForm(request.POST if posted else None, user=request.user)
    if not posted:
        return render(request, template, {"form": form})
    keys = _throttle_keys(request)
    try:
        for name, key in keys:
            limit_check(name=name, key=key)
        if form.is_valid():
            return None
        limits_hit(events=keys)
    except RateLimited as limited:
        form = PasswordConfirmForm(data={}, user=request.user)
        form.errors.clear()
        form.add_error(
            None,
            gettext("Too many wrong passwords. Try again in %(wait)s.") % {"wait": limited.wait},
        )
        response = render(request, template, {"form": form}, status=429)
        response["Retry-After"] = str(limited.retry_after)
        return response
    return render(request, template, {"form": form}, status=400)


@never_cache
@login_required
@require_GET
def account(request: AccountRequest) -> HttpResponse:
    this_device = two_factor_services.device_find(
        user=request.user, token=device_cookie_token(request)
    )
    context = {
        "phone": PhoneNumber.objects.filter(user=request.user).first(),
        "verified": request.is_verified(),
        "votes": Vote.objects.filter(user=request.user).count(),
        "devices": TrustedDevice.objects.active().filter(user=request.user),
        "this_device_id": this_device.pk if this_device else None,
    }
    return render(request, "accounts/account.html", context)


@login_required
@require_POST
def device_forget(request: AccountRequest, device_id: int) -> HttpResponse:
    """Forget one remembered device: its next session asks for a code again."""
    forgotten = two_factor_services.devices_forget(
        user_id=request.user.pk, device_id=device_id, reason=FORGOTTEN
    )
    if forgotten:
        messages.success(request, gettext("Forgotten. That device will ask for a code next time."))
    return _forgotten(request)


@login_required
@require_POST
def devices_forget_all(request: AccountRequest) -> HttpResponse:
    two_factor_services.devices_forget(user_id=request.user.pk, reason=FORGOTTEN)
    messages.success(
        request, gettext("All your devices are forgotten. Each will ask for a code next time.")
    )
    return _forgotten(request)


def _forgotten(request: AccountRequest) -> HttpResponse:
    response = redirect("account")
    # This browser's cookie, if its device is no longer remembered, goes too.
    token = device_cookie_token(request)
    if token and two_factor_services.device_find(user=request.user, token=token) is None:
        device_cookie_delete(response)
    return response


@never_cache
@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
def data_download(request: AccountRequest) -> HttpResponse:
    page = _unless_password_confirmed(request, "accounts/data.html")
    if page is not None:
        return page
    data = json.dumps(account_export(user=request.user), indent=2, ensure_ascii=False)
    response = HttpResponse(data, content_type="application/json; charset=utf-8")
    filename = f"pollstr-my-data-{timezone.now():%Y-%m-%d}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@never_cache
@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request: AccountRequest) -> HttpResponse:
    page = _unless_password_confirmed(request, "accounts/delete.html")
    if page is not None:
        return page
    user, ip = request.user, client_ip(request)
    # Signed out first, while the account still exists to say whose session ended.
    logout(request)
    account_erase(user=user, ip=ip)
    messages.success(
        request, gettext("Your account is deleted. Your votes stay counted, anonymously.")
    )
    return redirect("polls:index")
