from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext, gettext_noop
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from pollstr.client_ip import client_ip
from pollstr.languages import request_language
from pollstr.safe_redirect import safe_next_url
from two_factor import services
from two_factor.channels import channel_get, workflow_for
from two_factor.device_cookie import device_cookie_set
from two_factor.forms import PhoneNumberForm
from two_factor.models import (
    PHONE_NUMBER_OF_USER,
    TRAIL_OF_VERIFICATION,
    VERIFICATION_OF_USER,
    PhoneNumber,
    Status,
    Verification,
    live_of_session,
    session_key_hash,
    verification_of_session,
)
from two_factor.numbers import number_destination
from two_factor.protection import (
    COMPLETED_SESSION_KEY,
    NEXT_SESSION_KEY,
    next_remember,
    verification_not_required,
)
from two_factor.services import AlreadyCompleted, MalformedCode, VerificationRefused
from two_factor.services.devices import DeviceToken
from two_factor.status import STATUS_TEMPLATE, status_context

NUMBER_DRAFT_SESSION_KEY = "two_factor_number_draft"
# The verification whose code was sent with "Remember this device" ticked: completion
# (an HTTP response, so it can set the cookie) remembers the device once it is verified.
REMEMBER_SESSION_KEY = "two_factor_remember"


class HtmxHttpRequest(HttpRequest):
    """A request through django-htmx's middleware, on a login_required view."""

    htmx: HtmxDetails
    user: User
    is_verified: Callable[[], bool]  # two_factor.middleware


def _session_key(request: HtmxHttpRequest) -> str:
    if not request.session.session_key:
        request.session.save()
    return request.session.session_key or ""


def _get_own_verification(request: HtmxHttpRequest, verification_id: UUID) -> Verification:
    """This user's verification started in this session, else 404 (never say it exists)."""
    verification = verification_of_session(
        verification_id, user=request.user, session_key=_session_key(request)
    )
    if verification is None:
        raise Http404("No such verification.")
    verification.user = request.user  # the same row: no second query for it
    return verification


def _phone_of(request: HtmxHttpRequest) -> PhoneNumber | None:
    return PHONE_NUMBER_OF_USER.first(request.user.pk)


def _remember_next(request: HtmxHttpRequest) -> None:
    candidate = request.POST.get("next") or request.GET.get("next")
    if candidate:
        next_remember(request, candidate)


def _refused(
    request: HtmxHttpRequest, verification: Verification, refusal: VerificationRefused
) -> HttpResponse:
    if request.htmx:
        # status_context shows the row as it is now, not as this request read it.
        context = status_context(verification, error=gettext(refusal.message))
        return render(request, STATUS_TEMPLATE, context, status=200)
    messages.error(request, gettext(refusal.message))
    return redirect("two_factor:verify", verification_id=verification.pk)


def _malformed(
    request: HtmxHttpRequest, verification: Verification, refusal: MalformedCode, *, typed: str
) -> HttpResponse:
    """A typed code that cannot be one is the field's error, with what was typed kept in
    the field to fix (htmx: the preserved form still holds it)."""
    if request.htmx:
        context = status_context(verification, malformed=refusal.message)
        return render(request, STATUS_TEMPLATE, context)
    context = status_context(verification, malformed=refusal.message, typed_code=typed[:32])
    return render(request, "two_factor/verify.html", context, status=400)


def _start(request: HtmxHttpRequest, *, raw_number: str | None) -> Verification:
    """Start a verification for this session: of a typed number (pending until its code
    is verified), or of the account's number when none was typed."""
    number = (
        services.number_accept(user=request.user, raw_number=raw_number)
        if raw_number is not None
        else None
    )
    return services.verification_start(
        user=request.user,
        session_key=_session_key(request),
        ip=client_ip(request),
        number=number,
        locale=request_language(request),
    )


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """Redirect to a URL (never a URL name: `redirect("foo")` would try to reverse it)."""
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)


def _start_page(
    request: HtmxHttpRequest,
    *,
    form: PhoneNumberForm,
    phone: PhoneNumber | None,
    refusal: VerificationRefused | None = None,
) -> HttpResponse:
    context = {
        "form": form,
        "phone": phone,
        # How the code will go, from the workflow of the number's region.
        "workflow": (
            [
                channel_get(name)
                for name in workflow_for(country=number_destination(phone.number)[0])
            ]
            if phone is not None
            else []
        ),
        "error": gettext(refusal.message) if refusal else "",
        "verified": request.is_verified(),
        # A code already on its way to this session: offer to go back to it.
        "pending": live_of_session(user=request.user, session_key=_session_key(request)),
    }
    if refusal is None:
        return render(request, "two_factor/start.html", context)
    # 429 for "not now" (a cooldown or a limit), 400 for "not this".
    response = render(
        request, "two_factor/start.html", context, status=429 if refusal.retry_after else 400
    )
    if refusal.retry_after:
        response["Retry-After"] = str(refusal.retry_after)
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def start(request: HtmxHttpRequest) -> HttpResponse:
    """Ask for the number (first time) or for consent to text the stored one."""
    _remember_next(request)
    phone = _phone_of(request)
    # The number form is only bound when it is the one on the page (no number yet);
    # unbound, it shows the number typed before a cancel.
    draft = request.session.get(NUMBER_DRAFT_SESSION_KEY, "")
    form = PhoneNumberForm(
        request.POST if request.method == "POST" and phone is None else None,
        initial={"number": draft},
    )
    if request.method != "POST":
        return _start_page(request, form=form, phone=phone)
    try:
        if phone is not None:
            verification = _start(request, raw_number=None)
        elif form.is_valid():
            verification = _start(request, raw_number=form.cleaned_data["number"])
        else:
            raise VerificationRefused(gettext_noop("Enter your mobile number."))
    except VerificationRefused as refusal:
        if form.is_bound:
            form.add_error("number", gettext(refusal.message))
        return _start_page(request, form=form, phone=phone, refusal=refusal)
    request.session.pop(NUMBER_DRAFT_SESSION_KEY, None)
    return redirect("two_factor:verify", verification_id=verification.pk)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def change_number(request: HtmxHttpRequest) -> HttpResponse:
    """Text a code to a new number. The account's current number (if any) stays until the
    new one is verified, so a typo costs nothing."""
    phone = _phone_of(request)
    draft = request.session.get(NUMBER_DRAFT_SESSION_KEY, "")
    form = PhoneNumberForm(request.POST or None, initial={"number": draft})
    if request.method == "POST" and form.is_valid():
        try:
            verification = _start(request, raw_number=form.cleaned_data["number"])
        except VerificationRefused as refusal:
            form.add_error("number", gettext(refusal.message))
        else:
            request.session.pop(NUMBER_DRAFT_SESSION_KEY, None)
            return redirect("two_factor:verify", verification_id=verification.pk)
    status = 400 if form.errors else 200
    return render(
        request, "two_factor/change_number.html", {"form": form, "phone": phone}, status=status
    )


@never_cache
@login_required
@require_GET
def verify(request: HtmxHttpRequest, verification_id: UUID) -> HttpResponse:
    """The code page; for htmx (the page polling while its websocket is down) only the
    status partial, the same fragment the websocket pushes."""
    # The audit trail before the row, as status_context reads them when not given the
    # trail: the version the page shows never claims more than the row it renders.
    events = TRAIL_OF_VERIFICATION.all(verification_id)
    verification = _get_own_verification(request, verification_id)
    if request.htmx:
        return render(request, STATUS_TEMPLATE, status_context(verification, events=events))
    # A refusal redirected here is said in the status line, which the next update
    # replaces: a banner above the page would outstay the moment it was about.
    said = " ".join(str(message) for message in messages.get_messages(request))
    context = status_context(verification, error=said, events=events)
    return render(request, "two_factor/verify.html", context)


@login_required
@require_POST
def submit_code(request: HtmxHttpRequest, verification_id: UUID) -> HttpResponse:
    verification = _get_own_verification(request, verification_id)
    code = request.POST.get("code", "")
    # "Remember this device" (the box is there only with TWO_FACTOR_REMEMBER_DAYS): kept
    # for the completion response, which sets the device's cookie.
    if settings.TWO_FACTOR_REMEMBER_DAYS and request.POST.get("remember"):
        request.session[REMEMBER_SESSION_KEY] = str(verification.pk)
    else:
        request.session.pop(REMEMBER_SESSION_KEY, None)
    try:
        services.verification_submit_code(
            verification=verification, code=code, ip=client_ip(request)
        )
    except MalformedCode as refusal:
        return _malformed(request, verification, refusal, typed=code)
    except VerificationRefused as refusal:
        return _refused(request, verification, refusal)
    if request.htmx:
        return render(request, STATUS_TEMPLATE, status_context(verification))
    return redirect("two_factor:verify", verification_id=verification.pk)


@login_required
@require_POST
def resend(request: HtmxHttpRequest, verification_id: UUID) -> HttpResponse:
    verification = _get_own_verification(request, verification_id)
    try:
        new = services.verification_resend(
            verification=verification, session_key=_session_key(request), ip=client_ip(request)
        )
    except VerificationRefused as refusal:
        return _refused(request, verification, refusal)
    # The new code page says what happens ("Sending your code…", "New code sent by SMS.").
    return _go(request, reverse("two_factor:verify", args=[new.pk]))


@login_required
@require_POST
def switch_channel(request: HtmxHttpRequest, verification_id: UUID) -> HttpResponse:
    """ "Call me instead", "Send it by WhatsApp instead": the code by a later channel of
    the verification's workflow (the form's `channel`, a name of two_factor/channels.py)."""
    verification = _get_own_verification(request, verification_id)
    try:
        services.verification_switch_channel(
            verification=verification, channel=str(request.POST.get("channel", ""))
        )
    except VerificationRefused as refusal:
        return _refused(request, verification, refusal)
    if request.htmx:
        return render(request, STATUS_TEMPLATE, status_context(verification))
    # The status line says it once the step starts ("We're calling …").
    return redirect("two_factor:verify", verification_id=verification.pk)


@login_required
@require_POST
def wrong_number(request: HtmxHttpRequest, verification_id: UUID) -> HttpResponse:
    """The "Wrong number? Change it" button: end this code request and go back to the number form,
    filled in with what was typed (kept in the session, not in the URL)."""
    verification = _get_own_verification(request, verification_id)
    if verification.status in (Status.VERIFIED, Status.CONSUMED):
        return _refused(
            request,
            verification,
            VerificationRefused(gettext_noop("This number is already verified.")),
        )
    services.verification_cancel(verification=verification, ip=client_ip(request))
    request.session[NUMBER_DRAFT_SESSION_KEY] = verification.number.as_e164
    return _go(request, reverse("two_factor:change_number"))


@login_required
@require_POST
def cancel(request: HtmxHttpRequest, verification_id: UUID) -> HttpResponse:
    verification = _get_own_verification(request, verification_id)
    services.verification_cancel(verification=verification, ip=client_ip(request))
    messages.info(request, gettext("Cancelled. You can ask for a new code at any time."))
    # A number typed for this code waits in the number form (the account's own number
    # is offered by the start page anyway).
    phone = _phone_of(request)
    typed = phone is None or phone.number != verification.number
    if typed:
        request.session[NUMBER_DRAFT_SESSION_KEY] = verification.number.as_e164
    form_page = "two_factor:change_number" if typed and phone is not None else "two_factor:start"
    return _go(request, reverse(form_page))


@never_cache
@login_required
@require_GET
def complete(request: HtmxHttpRequest, verification_id: UUID) -> HttpResponse:
    """Consume a verified verification: rotate the session, set the flag, go on to `next`.

    The worker never writes sessions; the browser comes here once it sees "verified".
    """
    verification = VERIFICATION_OF_USER.first(verification_id, request.user.pk)
    if verification is None:
        raise Http404("No such verification.")
    verification.user = request.user
    target = safe_next_url(
        request, request.session.get(NEXT_SESSION_KEY, ""), reverse("polls:index")
    )
    # A second click on the same link: already done. The first click rotated the session
    # key, so _get_own_verification's session check can no longer match it.
    already_done = verification.status == Status.CONSUMED and request.is_verified()
    remembered = None  # a new device's token, for its cookie
    if already_done:
        # The first completion took `next` with it; go where it went.
        completed_id, completed_target = request.session.get(COMPLETED_SESSION_KEY, ("", ""))
        if completed_id == str(verification.pk):
            target = safe_next_url(request, completed_target, target)
    else:
        # _get_own_verification's rule, on the row already read.
        if verification.session_key_hash != session_key_hash(_session_key(request)):
            raise Http404("No verification of this session has this id.")
        try:
            services.verification_complete(verification=verification, session=request.session)
        except AlreadyCompleted:
            # Another tab completed it a moment ago and holds the rotated session: leave
            # this (now replaced) session untouched and follow on.
            return _go(request, target)
        except VerificationRefused as refusal:
            return _refused(request, verification, refusal)
        messages.success(request, gettext("Your phone is verified. You can vote now."))
        if verification.notice:
            messages.info(request, gettext(verification.notice))
        remembered = _remember_device(request, verification)
        request.session[COMPLETED_SESSION_KEY] = [str(verification.pk), target]
    request.session.pop(NEXT_SESSION_KEY, None)
    response = _go(request, target)
    if remembered is not None:
        device_cookie_set(request, response, remembered)
    return response


def _remember_device(request: HtmxHttpRequest, verification: Verification) -> DeviceToken | None:
    """The new device's token when its code was sent with "Remember this device" ticked."""
    wished = request.session.pop(REMEMBER_SESSION_KEY, None) == str(verification.pk)
    if not wished or not settings.TWO_FACTOR_REMEMBER_DAYS:
        return None
    return services.device_remember(
        user=request.user,
        number=verification.number,
        user_agent=request.headers.get("User-Agent", ""),
    )


def _own_by_request_id(request: HtmxHttpRequest, request_id: str) -> Verification | None:
    if not request_id:
        return None
    own = Verification.objects.of_session(user=request.user, session_key=_session_key(request))
    return own.filter(request_id=request_id[:64]).first()


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def silent_return(request: HtmxHttpRequest) -> HttpResponse:
    """Where Verify sends the phone back after silent authentication, with `request_id`
    and `code` in the query (or, as Vonage's docs have it, in the fragment, which only
    the page's script can read). The GET only shows them in a form; its POST (CSRF, and
    the page submits it by itself) checks the code like a typed one: Verify must still
    be asked, and a wrong one counts."""
    request_id = str(request.POST.get("request_id") or request.GET.get("request_id", ""))[:64]
    verification = _own_by_request_id(request, request_id)
    if request.method == "GET":
        return render(
            request,
            "two_factor/silent_return.html",
            {
                "request_id": request_id,
                "code": str(request.GET.get("code", ""))[:32],
                "failed": bool(request.GET.get("error")),
                "verification": verification,
            },
        )
    if verification is None:
        # Another browser than the one that started (the phone's, signed in elsewhere).
        return render(request, "two_factor/silent_return.html", {"not_here": True}, status=404)
    code = str(request.POST.get("code", ""))
    try:
        services.verification_submit_code(
            verification=verification, code=code, ip=client_ip(request)
        )
    except (MalformedCode, VerificationRefused) as refusal:
        return _refused(request, verification, refusal)
    return redirect("two_factor:verify", verification_id=verification.pk)


def _sandbox_only() -> None:
    """The sandbox's pages exist only while it is the gateway and its inbox is on."""
    if settings.TWO_FACTOR_GATEWAY != "sandbox" or not settings.TWO_FACTOR_SANDBOX_INBOX:
        raise Http404("The sandbox is not available.")


@never_cache
@verification_not_required
@require_http_methods(["GET", "POST"])
def sandbox_silent_auth(request: HtmxHttpRequest, request_id: str) -> HttpResponse:
    """The sandbox's check URL: it plays the mobile network a phone meets when it opens
    a silent-authentication link. "Confirm" redirects back to our return page with the
    code, as Verify does; "Can't confirm" fails the step, which moves the workflow on
    (the SMS goes out) and is applied as Verify's callback would be."""
    _sandbox_only()
    from two_factor.gateways.errors import GatewayError
    from two_factor.gateways.sandbox import SandboxGateway

    gateway = SandboxGateway.from_settings()
    context = {"request_id": request_id}
    if request.method == "GET":
        return render(request, "two_factor/sandbox_silent_auth.html", context)
    try:
        if request.POST.get("outcome") == "confirm":
            return HttpResponseRedirect(gateway.silent_auth_complete(request_id[:64]))
        gateway.silent_auth_fail(request_id[:64])
    except GatewayError as error:
        context["error"] = error.message
        return render(request, "two_factor/sandbox_silent_auth.html", context, status=409)
    from two_factor.callbacks import callback_settle

    # What Verify's event callback says; applied here too, so the sandbox needs no webhook.
    callback_settle(
        payload={
            "request_id": request_id[:64],
            "type": "event",
            "channel": "silent_auth",
            "status": "failed",
        }
    )
    return HttpResponseRedirect(
        f"{reverse('two_factor:silent_return')}?request_id={request_id[:64]}&error=failed"
    )


@never_cache
@require_GET
def sandbox_inbox(request: HtmxHttpRequest) -> HttpResponse:
    """The dev inbox of the offline gateway, like a local mail catcher."""
    _sandbox_only()
    from two_factor.gateways.sandbox import sandbox_inbox as read_inbox

    context = {"messages_sent": read_inbox(limit=20)}
    return render(request, "two_factor/sandbox_inbox.html", context)
