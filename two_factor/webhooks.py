"""Endpoints the SMS provider calls. They check the provider's signature and the body's
shape (``gateways.vonage.callbacks``), then hand over to ``two_factor.callbacks``."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from two_factor.callbacks import callback_receive
from two_factor.gateways.vonage.callbacks import (
    MAX_BODY_BYTES,
    CallbackRefused,
    callback_payload_parse,
    callback_token_verify,
)

logger = logging.getLogger(__name__)


# Exempt from CSRF: the provider's server has no session, cookie or CSRF token to send.
# CSRF protects a browser's ambient credentials; this view trusts none (no session is
# read), only the HS256 signature over the body, checked below before anything happens.
@csrf_exempt
def vonage_verify(request: HttpRequest) -> HttpResponse:
    """Vonage Verify v2 status callbacks (event and summary).

    Answers 200 only once the callback is stored and applied; refusals are 4xx (503
    when no signature secret is configured) with a short JSON error and change nothing.
    """
    if request.method != "POST":
        response = _refusal(CallbackRefused(405, "Use POST."))
        response["Allow"] = "POST"
        return response
    try:
        body = _body(request)
        token_id = callback_token_verify(
            authorization=request.headers.get("Authorization"),
            body=body,
            secret=settings.VONAGE_SIGNATURE_SECRET,
            max_age=settings.TWO_FACTOR_WEBHOOK_MAX_AGE,
        )
        payload = callback_payload_parse(body)
        record = callback_receive(token_id=token_id, payload=payload)
    except CallbackRefused as refused:
        logger.warning("Refused a Verify callback (%s): %s", refused.status, refused.message)
        return _refusal(refused)
    return JsonResponse({"result": record.result})


def _body(request: HttpRequest) -> bytes:
    """The raw body, refused before it is read when it is larger than a callback can be."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise CallbackRefused(400, "Content-Length must be a number.") from None
    if declared > MAX_BODY_BYTES:
        raise CallbackRefused(413, "The body is too large.")
    try:
        body = request.body
    except RequestDataTooBig:
        raise CallbackRefused(413, "The body is too large.") from None
    if len(body) > MAX_BODY_BYTES:
        raise CallbackRefused(413, "The body is too large.")
    return body


def _refusal(refused: CallbackRefused) -> JsonResponse:
    response = JsonResponse({"error": refused.message}, status=refused.status)
    if refused.status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response
