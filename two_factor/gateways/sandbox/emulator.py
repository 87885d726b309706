"""An emulator of Vonage Verify v2: its request lifecycle and its rules, in one place.

The sandbox gateway and the tests' HTTPS double of Verify both run on
:class:`VerifyEmulator`, so "what Verify does" is decided once. It raises
:class:`RuleViolation` subclasses carrying the HTTP status and the problem+json body
Verify answers with; the double sends them as they are, the sandbox translates them to
gateway errors with the Vonage gateway's own table (``gateways.vonage.problems``).

Time is lazy: nothing runs in the background. Each call (and :meth:`VerifyEmulator.sweep`)
first moves a request past every channel timeout that has elapsed on the clock.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

from .store import MemoryStore, Store

logger = logging.getLogger(__name__)

Record = dict[str, Any]
Sink = Callable[[dict[str, Any]], None]

# Verify v2's channels (its API reference): which take a phone number, which take a
# code, and which need a `from` (a sender of the account: WhatsApp Business, RCS agent).
PHONE_CHANNELS = frozenset({"sms", "voice", "whatsapp", "rcs"})
CODE_CHANNELS = PHONE_CHANNELS | {"email"}
NEEDS_FROM = frozenset({"whatsapp", "rcs"})
# Silent authentication: no code is sent; the handset opens the request's check URL over
# mobile data and the network vouches for the number. Verify takes it first only.
SILENT_AUTH = "silent_auth"
# A step's fields besides `channel` and `to` that the emulator keeps (and shows).
_STEP_FIELDS = ("from", "redirect_url")
# The workflow of Verify's own examples, for callers that name none (tests).
EXAMPLE_CHANNELS = ("sms", "voice")
_TO_PATTERN = re.compile(r"^[1-9]\d{6,14}$")
_BRAND_FORBIDDEN = re.compile(r"[/{}:$]")
_CLIENT_REF_PATTERN = re.compile(r"^[A-Za-z0-9]{1,40}$")
_CUSTOM_CODE_PATTERN = re.compile(r"^[A-Za-z0-9]{4,10}$")
_LOCALE_PATTERN = re.compile(r"^[a-z]{2}-[a-z]{2}$")
# Verify's own SMS and voice wording in the locales Pollstr sends (``locale`` picks it;
# unknown locales get en-us's), with ${brand} and ${code} as in a template.
VERIFY_WORDING: dict[str, str] = {
    "en-us": "Your ${brand} verification code is: ${code}",
    "fr-fr": "Votre code de vérification ${brand} est : ${code}",
    "es-es": "Tu código de verificación de ${brand} es: ${code}",
}

# Record statuses; the summary callback uses the same words.
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"


# --- what Verify answers when a rule is broken -------------------------------------


class RuleViolation(Exception):
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad Request"
    default_detail: ClassVar[str] = "The request was not valid."
    slug: ClassVar[str] = "bad-request"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(f"{self.status} {self.title}: {self.detail}")

    def problem(self) -> dict[str, Any]:
        """The application/problem+json body Verify sends for this error."""
        return {
            "type": f"https://developer.vonage.com/api-errors#{self.slug}",
            "title": self.title,
            "detail": self.detail,
            "instance": str(uuid.uuid4()),
        }


class InvalidParams(RuleViolation):
    status = 422
    title = "Invalid params"
    default_detail = "The value of one or more parameters is invalid."
    slug = "invalid-params"

    def __init__(self, invalid_parameters: Sequence[tuple[str, str]]) -> None:
        self.invalid_parameters = [{"name": n, "reason": r} for n, r in invalid_parameters]
        names = ", ".join(p["name"] for p in self.invalid_parameters)
        super().__init__(f"The value of one or more parameters is invalid: {names}.")

    def problem(self) -> dict[str, Any]:
        return {**super().problem(), "invalid_parameters": self.invalid_parameters}


class ConcurrentVerification(RuleViolation):
    status = 409
    title = "Conflict"
    default_detail = "Concurrent verifications to the same number are not allowed."
    slug = "conflict"

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__()

    def problem(self) -> dict[str, Any]:
        return {**super().problem(), "request_id": self.request_id}


class WrongCode(RuleViolation):
    status = 400
    title = "Invalid Code"
    default_detail = "The code you provided does not match the expected value."
    slug = "invalid-code"


class TooManyWrongCodes(RuleViolation):
    status = 410
    title = "Invalid Code"
    default_detail = "An incorrect code has been provided too many times. Workflow terminated."
    slug = "expired"


class NotFound(RuleViolation):
    status = 404
    title = "Not Found"
    default_detail = "Request was not found or it has been verified already."
    slug = "not-found"


class NoCodeStep(RuleViolation):
    status = 409
    title = "Conflict"
    default_detail = "The current step does not take a code (no-code)."
    slug = "conflict"


class NoMoreEvents(RuleViolation):
    status = 409
    title = "Conflict"
    default_detail = "There are no more events left to trigger."
    slug = "conflict"


# --- the emulator -------------------------------------------------------------------


def isoformat(timestamp: float) -> str:
    """Verify's timestamp format: ISO 8601, UTC, milliseconds, 'Z'."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Effects:
    """Messages and callbacks collected under the lock, emitted after it is released."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []


class VerifyEmulator:
    """Verify v2's request lifecycle over a :class:`Store` and a clock.

    - ``max_wrong_codes``: the wrong code that terminates the workflow (410). Verify's
      docs say a code "can be retried a maximum of three times" without saying whether
      the 3rd or the 4th wrong code ends it, so it is configurable; default 3.
    - ``number_is_valid``: extra validity rule for ``to`` beyond the E.164 pattern
      (the real API refuses unroutable numbers with 422).
    - ``strict_cancel_window``: the docs allow cancelling only 30 s after the start
      and before the second step; off by default because the sources disagree.
    - ``on_message(message)``: every code sent (step started).
    - ``on_callback(payload)``: Verify's event and summary callback bodies.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_wrong_codes: int = 3,
        number_is_valid: Callable[[str], bool] | None = None,
        strict_cancel_window: bool = False,
        on_message: Sink | None = None,
        on_callback: Sink | None = None,
        price: str = "0.00000000",
        templates: Mapping[str, str] | None = None,
        check_url_for: Callable[[str], str] | None = None,
        silent_auth_in_fragment: bool = False,
    ) -> None:
        if max_wrong_codes < 1:
            raise ValueError("max_wrong_codes must be at least 1")
        self.store: Store = store if store is not None else MemoryStore()
        self.clock = clock
        self.max_wrong_codes = max_wrong_codes
        self.number_is_valid = number_is_valid
        self.strict_cancel_window = strict_cancel_window
        self.on_message = on_message
        self.on_callback = on_callback
        self.price = price
        # The account's SMS templates (Verify's template fragments), by template_id:
        # text with ${code} and ${brand}. Unknown ids are refused like Verify's 422. A
        # fragment for one locale is keyed "<template_id>:<locale>" (e.g. ":fr-fr") and
        # wins over the template's default text for a request in that locale.
        self.templates = templates if templates is not None else {}
        # Where a silent-auth step's handset goes (the start answers with it), by request
        # id; and whether the redirect back carries request_id and code in the query or
        # in the fragment (Vonage's docs say fragment, other sources query: both ways).
        self.check_url_for = check_url_for or (
            lambda request_id: f"https://api.nexmo.com/v2/verify/{request_id}/silent-auth/redirect"
        )
        self.silent_auth_in_fragment = silent_auth_in_fragment

    # --- operations -------------------------------------------------------------

    def start(
        self,
        *,
        to: str,
        brand: str,
        channels: Sequence[str] = EXAMPLE_CHANNELS,
        workflow: Sequence[Mapping[str, Any]] | None = None,
        code_length: int = 4,
        channel_timeout: int = 180,
        locale: str = "en-us",
        client_ref: str | None = None,
        template_id: str | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "brand": brand,
            "workflow": [
                {**step, "to": to} for step in (workflow or [{"channel": str(c)} for c in channels])
            ],
            "code_length": code_length,
            "channel_timeout": channel_timeout,
            "locale": locale,
        }
        if client_ref is not None:
            body["client_ref"] = client_ref
        if template_id is not None:
            body["template_id"] = template_id
        return self.start_request(body)

    def start_request(self, body: Mapping[str, Any]) -> str:
        """Start from a raw ``POST /v2/verify`` body; return the new request id."""
        request = self._validated(body)
        with self._transaction() as effects:
            now = self.clock()
            numbers = sorted({step["to"] for step in request["workflow"]})
            for number in numbers:
                live_id = self.store.get(f"live:{number}")
                if live_id is not None and self._load(live_id, now, effects) is not None:
                    raise ConcurrentVerification(live_id)
            request_id = str(uuid.uuid4())
            record: Record = {
                **request,
                "request_id": request_id,
                "code": request["code"] or self._new_code(request["code_length"]),
                "submitted_at": now,
                "status": IN_PROGRESS,
                "step": 0,
                "step_started_at": now,
                "wrong_codes": 0,
                "finalized_at": None,
            }
            if request["workflow"][0]["channel"] == SILENT_AUTH:
                record["check_url"] = self.check_url_for(request_id)
            self._begin_step(record, 0, now, effects)
            self.store.set(f"req:{request_id}", record)
            for number in numbers:
                self.store.set(f"live:{number}", request_id)
            self.store.set("index", [*self._index(), request_id])
        return request_id

    def check(self, request_id: str, code: str) -> None:
        with self._transaction() as effects:
            now = self.clock()
            record = self._require_live(request_id, now, effects)
            step = record["workflow"][record["step"]]
            if step["channel"] == SILENT_AUTH and not record.get("silent_auth_passed"):
                raise NoCodeStep()
            if secrets.compare_digest(str(code).encode(), record["code"].encode()):
                step["status"] = COMPLETED
                self._finalize(record, COMPLETED, now, effects)
                return
            record["wrong_codes"] += 1
            if record["wrong_codes"] >= self.max_wrong_codes:
                step["status"] = FAILED
                self._finalize(record, FAILED, now, effects)
                raise TooManyWrongCodes()
            self.store.set(f"req:{request_id}", record)
            raise WrongCode()

    def next_workflow(self, request_id: str) -> None:
        with self._transaction() as effects:
            now = self.clock()
            record = self._require_live(request_id, now, effects)
            index = record["step"]
            if index + 1 >= len(record["workflow"]):
                raise NoMoreEvents()
            # Verify reports a skipped step like one whose timeout passed.
            record["workflow"][index]["status"] = EXPIRED
            self._begin_step(record, index + 1, now, effects)
            self.store.set(f"req:{request_id}", record)

    def check_url(self, request_id: str) -> str | None:
        record = self.store.get(f"req:{request_id}")
        return None if record is None else record.get("check_url")

    def silent_auth_complete(self, request_id: str) -> str:
        """The handset opened the check URL over mobile data and the network vouched for
        the number: the location Verify redirects it to, ``redirect_url`` with the
        request id and the code (which must still be checked)."""
        with self._transaction() as effects:
            record = self._require_live(request_id, self.clock(), effects)
            self._require_silent_step(record)
            record["silent_auth_passed"] = True
            self._save(record)
        separator = "#" if self.silent_auth_in_fragment else "?"
        target = record["workflow"][0].get("redirect_url") or ""
        query = f"request_id={request_id}&code={record['code']}"
        return f"{target}{separator if separator not in target else '&'}{query}"

    def silent_auth_fail(self, request_id: str) -> None:
        """The network could not vouch for the number (Wi-Fi, a desktop, another
        network): the step fails with an event callback and the next step starts, as
        after its timeout."""
        with self._transaction() as effects:
            now = self.clock()
            record = self._require_live(request_id, now, effects)
            self._require_silent_step(record)
            record["workflow"][0]["status"] = FAILED
            effects.callbacks.append(self._event(record, FAILED, now))
            if len(record["workflow"]) > 1:
                self._begin_step(record, 1, now, effects)
                self._save(record)
            else:
                self._finalize(record, FAILED, now, effects)

    def _require_silent_step(self, record: Record) -> None:
        if record["workflow"][record["step"]]["channel"] != SILENT_AUTH:
            raise NotFound("This request is not on a silent authentication step.")

    def cancel(self, request_id: str) -> None:
        with self._transaction() as effects:
            now = self.clock()
            record = self._require_live(request_id, now, effects)
            if self.strict_cancel_window and (
                now - record["submitted_at"] < 30 or record["step"] > 0
            ):
                raise NotFound("This request can no longer be cancelled.")
            self._release(record)
            self.store.delete(f"req:{request_id}")

    def sweep(self) -> None:
        """Move every live request past elapsed channel timeouts (sends the voice step,
        expires stale requests) without waiting for someone to touch it."""
        with self._transaction() as effects:
            now = self.clock()
            for request_id in self._index():
                self._load(request_id, now, effects)

    # --- inspection -------------------------------------------------------------

    def get(self, request_id: str) -> Record | None:
        """The stored record, brought up to date with the clock."""
        with self._transaction() as effects:
            now = self.clock()
            record = self.store.get(f"req:{request_id}")
            if record is not None and self._advance(record, now, effects):
                self._save(record)
        return record

    def status(self, request_id: str) -> str | None:
        record = self.get(request_id)
        return None if record is None else record["status"]

    def current_channel(self, request_id: str) -> str | None:
        record = self.get(request_id)
        if record is None or record["status"] != IN_PROGRESS:
            return None
        return record["workflow"][record["step"]]["channel"]

    def live_request_for(self, to: str) -> str | None:
        with self._transaction() as effects:
            live_id = self.store.get(f"live:{to}")
            if live_id is None or self._load(live_id, self.clock(), effects) is None:
                return None
        return live_id

    # --- rules ------------------------------------------------------------------

    def _validated(self, body: Mapping[str, Any]) -> Record:
        problems: list[tuple[str, str]] = []

        brand = body.get("brand")
        if not isinstance(brand, str) or not 1 <= len(brand) <= 18:
            problems.append(("brand", "must be a string of 1 to 18 characters"))
        elif _BRAND_FORBIDDEN.search(brand):
            problems.append(("brand", "must not contain / { } : $"))

        workflow = body.get("workflow")
        steps: list[dict[str, Any]] = []
        if not isinstance(workflow, list) or not 1 <= len(workflow) <= 3:
            problems.append(("workflow", "must be a list of 1 to 3 steps"))
        else:
            for i, step in enumerate(workflow):
                channel = step.get("channel") if isinstance(step, dict) else None
                to = step.get("to") if isinstance(step, dict) else None
                if channel not in CODE_CHANNELS | {SILENT_AUTH}:
                    problems.append((f"workflow[{i}].channel", "is not a supported channel"))
                elif channel == SILENT_AUTH and i != 0:
                    problems.append((f"workflow[{i}].channel", "silent_auth must be first"))
                elif channel in PHONE_CHANNELS | {SILENT_AUTH} and not self._valid_number(to):
                    problems.append((f"workflow[{i}].to", "is not a valid phone number"))
                elif channel == "email" and not (isinstance(to, str) and "@" in to):
                    problems.append((f"workflow[{i}].to", "is not a valid email address"))
                elif channel in NEEDS_FROM and not (
                    isinstance(step.get("from"), str) and step["from"]
                ):
                    problems.append((f"workflow[{i}].from", "is required for this channel"))
                else:
                    extra = {k: step[k] for k in _STEP_FIELDS if step.get(k) is not None}
                    steps.append({"channel": channel, "to": to, **extra})

        code_length = body.get("code_length", 4)
        if not _is_int_between(code_length, 4, 10):
            problems.append(("code_length", "must be an integer from 4 to 10"))
        channel_timeout = body.get("channel_timeout", 180)
        if not _is_int_between(channel_timeout, 15, 900):
            problems.append(("channel_timeout", "must be an integer from 15 to 900"))
        locale = body.get("locale", "en-us")
        if not isinstance(locale, str) or not _LOCALE_PATTERN.match(locale):
            problems.append(("locale", "must look like en-us"))
        client_ref = body.get("client_ref")
        if client_ref is not None and not (
            isinstance(client_ref, str) and _CLIENT_REF_PATTERN.match(client_ref)
        ):
            problems.append(("client_ref", "must be 1 to 40 alphanumeric characters"))
        code = body.get("code")
        if code is not None and not (isinstance(code, str) and _CUSTOM_CODE_PATTERN.match(code)):
            problems.append(("code", "must be 4 to 10 alphanumeric characters"))

        template_id = body.get("template_id")
        if template_id is not None and template_id not in self.templates:
            problems.append(("template_id", "is not a template of this account"))

        if problems:
            raise InvalidParams(problems)
        return {
            "brand": brand,
            "workflow": [{**step, "status": "unused", "initiated_at": None} for step in steps],
            "code_length": code_length,
            "channel_timeout": channel_timeout,
            "locale": locale,
            "client_ref": client_ref,
            "code": code,
            "template_id": template_id,
        }

    def _valid_number(self, to: object) -> bool:
        if not isinstance(to, str) or not _TO_PATTERN.match(to):
            return False
        return self.number_is_valid is None or self.number_is_valid(to)

    @staticmethod
    def _new_code(length: int) -> str:
        return "".join(secrets.choice(string.digits) for _ in range(length))

    def _advance(self, record: Record, now: float, effects: _Effects) -> bool:
        """Apply every channel timeout that has passed; True if the record changed."""
        changed = False
        while record["status"] == IN_PROGRESS:
            deadline = record["step_started_at"] + record["channel_timeout"]
            if now < deadline:
                break
            index = record["step"]
            record["workflow"][index]["status"] = EXPIRED
            if index + 1 < len(record["workflow"]):
                # Verify reads out the same code on the next step; it does not make a new one.
                self._begin_step(record, index + 1, deadline, effects)
            else:
                self._finalize(record, EXPIRED, deadline, effects, save=False)
            changed = True
        return changed

    def _begin_step(self, record: Record, index: int, at: float, effects: _Effects) -> None:
        step = record["workflow"][index]
        record["step"] = index
        record["step_started_at"] = at
        step["status"] = IN_PROGRESS
        step["initiated_at"] = at
        if step["channel"] == SILENT_AUTH:
            return  # nothing is sent: the handset opens the check URL
        effects.messages.append(
            {
                "request_id": record["request_id"],
                "to": step["to"],
                "channel": step["channel"],
                "from": step.get("from", ""),
                "code": record["code"],
                "brand": record["brand"],
                "text": self._text(record, step["channel"]),
                "locale": record["locale"],
                "at": isoformat(at),
            }
        )

    def _text(self, record: Record, channel: str) -> str:
        """The message as the voter gets it: the request's template for an SMS, else
        Verify's own wording, in the request's locale."""
        template_id = record.get("template_id") or ""
        locale = record.get("locale") or "en-us"
        template = self.templates.get(f"{template_id}:{locale}") or self.templates.get(template_id)
        if channel != "sms" or template is None:
            template = VERIFY_WORDING.get(locale, VERIFY_WORDING["en-us"])
        return template.replace("${code}", record["code"]).replace("${brand}", record["brand"])

    def _finalize(
        self, record: Record, status: str, at: float, effects: _Effects, *, save: bool = True
    ) -> None:
        record["status"] = status
        record["finalized_at"] = at
        self._release(record)
        if save:
            self._save(record)
        if status in (COMPLETED, FAILED):
            effects.callbacks.append(self._event(record, status, at))
        effects.callbacks.append(self._summary(record))

    def _event(self, record: Record, status: str, at: float) -> dict[str, Any]:
        event = {
            "request_id": record["request_id"],
            "triggered_at": isoformat(at),
            "type": "event",
            "channel": record["workflow"][record["step"]]["channel"],
            "status": status,
            "finalized_at": isoformat(at),
        }
        if record["client_ref"] is not None:
            event["client_ref"] = record["client_ref"]
        return event

    def _summary(self, record: Record) -> dict[str, Any]:
        workflow = []
        for step in record["workflow"]:
            entry: dict[str, Any] = {"channel": step["channel"], "status": step["status"]}
            if step["initiated_at"] is not None:
                entry["initiated_at"] = isoformat(step["initiated_at"])
            workflow.append(entry)
        summary: dict[str, Any] = {
            "request_id": record["request_id"],
            "submitted_at": isoformat(record["submitted_at"]),
            "status": record["status"],
            "type": "summary",
            "channel_timeout": record["channel_timeout"],
            "workflow": workflow,
            "finalized_at": isoformat(record["finalized_at"]),
            "price": self.price,
        }
        if record["client_ref"] is not None:
            summary["client_ref"] = record["client_ref"]
        return summary

    # --- storage helpers (the store's lock is held) -------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[_Effects]:
        effects = _Effects()
        try:
            with self.store.lock():
                yield effects
        finally:
            self._emit(effects)

    def _emit(self, effects: _Effects) -> None:
        for sink, payloads in (
            (self.on_message, effects.messages),
            (self.on_callback, effects.callbacks),
        ):
            if sink is None:
                continue
            for payload in payloads:
                try:
                    sink(payload)
                except Exception:
                    # The request's state is already saved; a broken listener must not undo it.
                    logger.exception("Verify emulator listener failed for %r", payload)

    def _load(self, request_id: str, now: float, effects: _Effects) -> Record | None:
        """The live record, advanced to ``now``; None if missing or finished."""
        record = self.store.get(f"req:{request_id}")
        if record is None:
            return None
        if self._advance(record, now, effects):
            self._save(record)
        return record if record["status"] == IN_PROGRESS else None

    def _require_live(self, request_id: str, now: float, effects: _Effects) -> Record:
        record = self._load(request_id, now, effects)
        if record is None:
            raise NotFound(f"Request '{request_id}' was not found or it has been verified already.")
        return record

    def _save(self, record: Record) -> None:
        self.store.set(f"req:{record['request_id']}", record)

    def _index(self) -> list[str]:
        return list(self.store.get("index") or [])

    def _release(self, record: Record) -> None:
        """Free the record's numbers for a new request and drop it from the live index."""
        request_id = record["request_id"]
        for number in {step["to"] for step in record["workflow"]}:
            if self.store.get(f"live:{number}") == request_id:
                self.store.delete(f"live:{number}")
        self.store.set("index", [rid for rid in self._index() if rid != request_id])


def _is_int_between(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
