"""The tutorial's four steps: the provider call happens inside the request."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import View
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError
from vonage_verify import SmsChannel, VerifyRequest, VoiceChannel

from benchmarks.sync_baseline.models import Question, TwoFactor


def _client() -> Vonage:
    # A client per request, as Pollstr's gateway builds one per call: never shared
    # between runserver's threads.
    auth = Auth(api_key=settings.VONAGE_API_KEY, api_secret=settings.VONAGE_API_SECRET)
    return Vonage(auth, HttpClientOptions(api_host=settings.VONAGE_API_HOST, timeout=10))


def _next(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}):
        return candidate
    return "/"


class TwoFactorMixin(LoginRequiredMixin):
    """The tutorial's mixin: logged in, then verified in this session."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not request.session.get("verified"):
            return redirect(f"{reverse('number')}?next={request.path}")
        return super().dispatch(request, *args, **kwargs)


class PollDetail(TwoFactorMixin, View):
    def get(self, request: HttpRequest, question_id: int) -> HttpResponse:
        question = get_object_or_404(Question, pk=question_id)
        return render(request, "baseline/detail.html", {"question": question})


def number(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(f"{reverse('login')}?next={request.path}")
    if request.method != "POST":
        return render(request, "baseline/number.html", {"next": _next(request)})
    raw = request.POST.get("number", "").strip()
    if not raw.lstrip("+").isdigit():
        return render(request, "baseline/number.html", {"error": "Enter a number."}, status=400)
    TwoFactor.objects.update_or_create(user=request.user, defaults={"number": raw})
    to = raw.lstrip("+")
    verify_request = VerifyRequest(
        brand=settings.VONAGE_BRAND, workflow=[SmsChannel(to=to), VoiceChannel(to=to)]
    )
    try:
        response = _client().verify.start_verification(verify_request)
    except HttpRequestError as error:
        context = {"error": f"Could not send a code ({error.response.status_code})."}
        return render(request, "baseline/number.html", context, status=502)
    request.session["request_id"] = response.request_id
    return redirect(f"{reverse('code')}?next={_next(request)}")


def code(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated or "request_id" not in request.session:
        return redirect(reverse("number"))
    if request.method != "POST":
        return render(request, "baseline/code.html", {"next": _next(request)})
    try:
        _client().verify.check_code(request.session["request_id"], request.POST.get("code", ""))
    except HttpRequestError:
        context = {"error": "That code didn't match.", "next": _next(request)}
        return render(request, "baseline/code.html", context, status=400)
    request.session["verified"] = True
    del request.session["request_id"]
    return redirect(_next(request))


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")
