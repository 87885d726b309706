"""Vonage Verify v2's signed status callbacks, as pure functions: proving a callback
comes from the provider, checking its shape, and signing one as the provider does (for
the sandbox and the test double, which stand in for Vonage).

Receiving is two checks here, each refusing with :class:`CallbackRefused`:
:func:`callback_token_verify` (the signed JWT) and :func:`callback_payload_parse` (the
body's shape). Storing and applying a callback is ``two_factor.callbacks``' job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
import requests

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
SIGNING_ALGORITHM = "HS256"
# Seconds of clock skew tolerated between the provider and us (iat in the future, exp).
CLOCK_LEEWAY = 30
# Senders post to our own server: a slow answer must not hold up a gateway call.
POST_TIMEOUT = 3.0
_TOKEN_ID_MAX_LENGTH = 128
_FIELD_MAX_LENGTH = 32
_REQUEST_ID_MAX_LENGTH = 64
# Verify's callbacks are three levels deep at most; far more is not a callback.
_MAX_DEPTH = 32


class CallbackRefused(Exception):
    """A callback we won't store: ``status`` is the HTTP answer, ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- is it from the provider? ------------------------------------------------------------


def callback_token_verify(
    *, authorization: str | None, body: bytes, secret: str, max_age: int
) -> str:
    """Check the ``Authorization: Bearer <JWT>`` of a callback; return the token's id.

    HS256 only (``none`` and public-key algorithms are refused), signed with ``secret``,
    issued (``iat``) at most ``max_age`` seconds ago and not in the future, not past its
    ``exp``, and bound to ``body`` by its ``payload_hash`` (required whenever there is a
    body: a token without one would vouch for any body). The id is the ``jti``, or the
    token's hash if it has none: it may be used once.
    """
    if not secret:
        raise CallbackRefused(503, "Callbacks are not accepted: no signature secret is set.")
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CallbackRefused(401, "A signed Bearer token is required.")
    claims = _decoded(token, secret)

    # pyjwt has checked that iat is an integer and not in the future.
    if time.time() - int(claims["iat"]) > max_age:
        raise CallbackRefused(401, "The token is too old.")
    if "payload_hash" in claims:
        expected = hashlib.sha256(body).hexdigest()
        claimed = claims["payload_hash"]
        if not isinstance(claimed, str) or not hmac.compare_digest(claimed.lower(), expected):
            raise CallbackRefused(401, "The token was signed for a different body.")
    elif body:
        raise CallbackRefused(401, "The token must carry the body's hash (payload_hash).")
    jti = claims.get("jti")
    if jti is None:
        return hashlib.sha256(token.encode()).hexdigest()
    if not isinstance(jti, str) or not 1 <= len(jti) <= _TOKEN_ID_MAX_LENGTH:
        raise CallbackRefused(401, "The token's id (jti) is not valid.")
    return jti


def _decoded(token: str, secret: str) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            secret,
            algorithms=[SIGNING_ALGORITHM],
            options={"require": ["iat"]},
            leeway=CLOCK_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise CallbackRefused(401, "The token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise CallbackRefused(401, "The token was issued in the future.") from None
    except jwt.MissingRequiredClaimError:
        raise CallbackRefused(401, "The token must say when it was issued (iat).") from None
    except jwt.InvalidIssuedAtError:
        raise CallbackRefused(401, "The token's issue time (iat) must be a number.") from None
    except jwt.InvalidAlgorithmError:
        raise CallbackRefused(401, "Only HS256-signed tokens are accepted.") from None
    except jwt.PyJWTError:
        raise CallbackRefused(401, "The token's signature is not valid.") from None


# --- is it a callback? ---------------------------------------------------------------------


def callback_payload_parse(body: bytes) -> dict[str, Any]:
    """The callback's JSON object, with the fields we rely on checked for type."""
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise CallbackRefused(400, "The body must be JSON.") from None
    if not isinstance(payload, dict):
        raise CallbackRefused(400, "The body must be a JSON object.")
    _refuse_unstorable(payload)

    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= _REQUEST_ID_MAX_LENGTH:
        raise CallbackRefused(400, "request_id must be a string of 1 to 64 characters.")
    for name in ("type", "status"):
        value = payload.get(name)
        if not isinstance(value, str) or not 1 <= len(value) <= _FIELD_MAX_LENGTH:
            raise CallbackRefused(400, f"{name} must be a string of 1 to 32 characters.")
    for name in ("channel", "client_ref"):
        if name in payload and not isinstance(payload[name], str | None):
            raise CallbackRefused(400, f"{name} must be a string.")
    workflow = payload.get("workflow")
    if workflow is not None and not (
        isinstance(workflow, list) and all(isinstance(step, dict) for step in workflow)
    ):
        raise CallbackRefused(400, "workflow must be a list of objects.")
    return payload


def _refuse_unstorable(payload: dict[str, Any]) -> None:
    """Refuse what a database row can't hold, before anything is written.

    Databases store no NUL character and no lone surrogate (``"\\ud800"`` is valid JSON
    but not UTF-8) in text or JSON columns; NaN is refused by the parser already. Deep
    nesting is refused too: the JSON encoder that saves the body recurses once per level
    and would run out of stack where the parser, higher up, did not. Walked without
    recursion for the same reason.
    """
    pending: list[tuple[Any, int]] = [(payload, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > _MAX_DEPTH:
            raise CallbackRefused(400, f"The body must not nest deeper than {_MAX_DEPTH} levels.")
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in (*value.keys(), *value.values()))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and not _storable_text(value):
            raise CallbackRefused(
                400, "The body must not contain NUL characters or unpaired surrogates."
            )


def _storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# --- sending (standing in for the provider) ------------------------------------------------


def callback_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def callback_sign(body: bytes, secret: str, *, issued_at: float | None = None) -> str:
    """A token as the provider signs one: HS256 with the signature secret, bound to
    ``body`` by its hash, with a fresh id."""
    claims = {
        "iat": int(time.time() if issued_at is None else issued_at),
        "jti": str(uuid.uuid4()),
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }
    return jwt.encode(claims, secret, algorithm=SIGNING_ALGORITHM)


def callback_post(
    url: str, payload: Mapping[str, Any], secret: str, *, timeout: float = POST_TIMEOUT
) -> int | None:
    """POST a signed callback; return the HTTP status, or None if it didn't arrive.

    Failures are logged, never raised: the caller is in the middle of a gateway call.
    """
    body = callback_body(payload)
    headers = {
        "Authorization": f"Bearer {callback_sign(body, secret)}",
        "Content-Type": "application/json",
    }
    try:
        with requests.Session() as session:
            # Our own server: no environment proxy in between.
            session.trust_env = False
            response = session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
    except requests.RequestException as error:
        logger.warning("Callback to %s not delivered: %s", url, error)
        return None
    if not 200 <= response.status_code < 300:
        logger.warning(
            "Callback to %s answered %s: %s", url, response.status_code, response.text[:200]
        )
    return response.status_code
