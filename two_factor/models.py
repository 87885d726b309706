from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, connections, models, router
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pollstr.db.prepared import (
    PreparedRead,
    RowWrite,
    row_converted,
    row_insert,
    whole_row_converters,
)
from two_factor.fields import PhoneNumberField


class PhoneNumber(models.Model):
    """The account's verified number. Unique across accounts (one person, one vote).

    A row is written only when a code sent to the number is verified: a typed number is
    the pending number of its Verification until then, so it never blocks anyone.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="phone_number"
    )
    number = PhoneNumberField(unique=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.masked

    @property
    def masked(self) -> str:
        from two_factor.numbers import number_mask

        return number_mask(self.number)


class Status(models.TextChoices):
    """Where a verification is, whichever channel its code went by (the row's
    ``channel``, a row of two_factor/channels.py)."""

    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    # A code is out, on the row's `channel` (step `step` of its `workflow`).
    SENT = "sent", _("Code sent")
    CHECKING = "checking", _("Checking code")
    VERIFIED = "verified", _("Verified")
    CONSUMED = "consumed", _("Completed")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired")
    CANCELLED = "cancelled", _("Cancelled")


# The state machine of docs/ARCHITECTURE.md. Anything not listed here is refused by transition().
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.QUEUED: frozenset({Status.SENDING, Status.FAILED, Status.CANCELLED}),
    Status.SENDING: frozenset({Status.SENT, Status.FAILED, Status.CANCELLED}),
    Status.SENT: frozenset(
        {
            # The workflow's next step (its timeout passed, or the voter asked for it).
            Status.SENT,
            Status.CHECKING,
            Status.VERIFIED,
            Status.EXPIRED,
            Status.CANCELLED,
            Status.FAILED,
        }
    ),
    Status.CHECKING: frozenset({Status.VERIFIED, Status.SENT, Status.FAILED, Status.EXPIRED}),
    Status.VERIFIED: frozenset({Status.CONSUMED}),
    Status.CONSUMED: frozenset(),
    Status.FAILED: frozenset(),
    Status.EXPIRED: frozenset(),
    Status.CANCELLED: frozenset(),
}
LIVE_STATUSES = frozenset({Status.QUEUED, Status.SENDING, Status.SENT, Status.CHECKING})
CODE_STATUSES = frozenset({Status.SENT})
TERMINAL_STATUSES = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


class VerificationQuerySet(models.QuerySet["Verification"]):
    def update(self, **kwargs: Any) -> int:
        """Every write moves `updated_at`, a queryset's too (auto_now only covers save()):
        an open page compares it with the row's to know whether anything changed since
        it was rendered (two_factor.consumers)."""
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)

    def live(self) -> VerificationQuerySet:
        return self.filter(status__in=LIVE_STATUSES)

    def of_session(self, *, user: Any, session_key: str | None) -> VerificationQuerySet:
        """The user's verifications started in this session (none without a session)."""
        owner = _session_owner(user, session_key)
        if owner is None:
            return self.none()
        return self.filter(user=owner[0], session_key_hash=owner[1])


class Verification(models.Model):
    """One attempt to verify one session of one user by phone."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="verifications"
    )
    # A hash, never the session key itself: the table must not hand out live sessions.
    session_key_hash = models.CharField(max_length=64, db_index=True)
    number = PhoneNumberField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The channels this verification tries, in order (names of two_factor/channels.py),
    # chosen for the number's region when it starts; and the step it is on.
    workflow = models.JSONField(default=list, blank=True)
    step = models.PositiveSmallIntegerField(default=0)
    # The current step's channel ("" until the code is out).
    channel = models.CharField(max_length=16, blank=True)
    # The channel the voter asked to switch to while the worker asks the provider ("" for
    # none): the page says so, and reloads itself without JavaScript, until the step
    # starts. Every transition clears it, and so does the switch's task when it ends.
    switching_to = models.CharField(max_length=16, blank=True)
    # The URL the voter's phone opens for a silent-authentication step (the start's
    # answer; "" for none). Not a secret on its own: the code comes back to this
    # session's return page only.
    check_url = models.TextField(blank=True)
    wrong_codes = models.PositiveSmallIntegerField(default=0)
    send_attempts = models.PositiveSmallIntegerField(default=0)
    # Which task delivery claimed the send (see services.verification_send).
    send_claim = models.CharField(max_length=64, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    channel_deadline = models.DateTimeField(null=True, blank=True)
    # When the first provider call of this verification's send began: a re-driven send
    # may only adopt the provider's live request while that request can still be live.
    send_started_at = models.DateTimeField(null=True, blank=True)
    # The next moment something must happen to this row if nothing else does (a lost
    # task, a retry in backoff, a step's timeout). The reconciler drives every live row
    # past it, so a lost broker message costs one sweep, never an hour.
    deadline_at = models.DateTimeField(null=True, blank=True)
    # A sentence for the voter about what just happened in a live state ("enter the code
    # again"); every transition replaces it.
    notice = models.CharField(max_length=200, blank=True)
    # Started by "Send a new code" while an earlier code was live: older codes no longer work.
    is_resend = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    # Where the code goes, as the SMS budget counts it (services/budget.py): the region
    # ("GB") and the mobile prefix ("+44791"). Written once, at the start.
    country = models.CharField(max_length=2, blank=True)
    prefix = models.CharField(max_length=16, blank=True)
    # The voter's language when they asked for the code (one of LANGUAGES): the SMS and
    # the call speak it (Verify's locale, pollstr/languages.py). Pages show each viewer
    # their own language; stored sentences stay English and are translated when shown.
    locale = models.CharField(max_length=8, default="en")

    objects = VerificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(
                fields=["deadline_at"],
                condition=models.Q(deadline_at__isnull=False),
                name="verification_due",
            ),
            # The conversion governor's window: a country's codes sent lately.
            models.Index(
                fields=["country", "sent_at"],
                condition=models.Q(sent_at__isnull=False),
                name="verification_sent_to",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in Status]),
                name="verification_status_known",
            ),
            # One live verification per user, whatever races the web tier loses.
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(status__in=sorted(s.value for s in LIVE_STATUSES)),
                name="one_live_verification_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def accepts_code(self) -> bool:
        return self.status in CODE_STATUSES

    @property
    def wrong_codes_left(self) -> int:
        return max(0, settings.TWO_FACTOR_MAX_WRONG_CODES - self.wrong_codes)

    @property
    def masked_number(self) -> str:
        from two_factor.numbers import number_mask

        return number_mask(self.number)

    @property
    def channels_left(self) -> list[str]:
        """The workflow's channels after the current step: what the voter may still
        switch to, and what the step's timeout moves on to."""
        if self.status != Status.SENT:
            return []
        return list(self.workflow[self.step + 1 :])

    def resend_available_in(self, *, now: datetime | None = None) -> int:
        """Seconds before a new code may be requested (Verify refuses a cancel sooner, too)."""
        last = self.sent_at or self.created_at
        ready_at = last + timedelta(seconds=settings.TWO_FACTOR_RESEND_COOLDOWN)
        return max(0, int((ready_at - (now or timezone.now())).total_seconds() + 0.999))

    def seconds_until(self, moment: datetime | None) -> int | None:
        if moment is None:
            return None
        return max(0, int((moment - timezone.now()).total_seconds()))


class VerificationEventManager(models.Manager["VerificationEvent"]):
    def append(self, event: VerificationEvent) -> list[VerificationEvent] | None:
        """Insert `event` (a new one: the trail is append-only) and, on PostgreSQL, return
        its verification's whole trail up to and including it, in the trail's order, read
        by the same statement. Elsewhere the trail is not read here (None).

        The caller holds the verification's row lock (every writer of events takes it
        first), so no other event of the verification can come between the two.
        `save()` and its signals are not run on PostgreSQL: the event is written once,
        exactly as `save()` would have written it (the model's `pre_save` values)."""
        if event.pk is not None:
            raise ValueError("Verification events are append-only.")
        connection = connections[router.db_for_write(VerificationEvent)]
        if connection.vendor != "postgresql":
            event.save(force_insert=True)
            return None
        return self._append(event, connection, after=None)

    def create_with_first(self, verification: Verification, event: VerificationEvent) -> None:
        """Insert a new `verification` and its first `event`, as their `save()` would
        write them: on PostgreSQL in one statement; elsewhere (or with save signals to
        send) two saves."""
        insert = row_insert(verification)
        if insert is None:
            verification.save(force_insert=True)
            event.save(force_insert=True)
        elif self._append(event, connections[insert.using], after=insert) is None:
            # An INSERT writes its row or raises: nothing written is never silent.
            raise DatabaseError("the verification's insert returned no row")

    def append_after(
        self, event: VerificationEvent, update: RowWrite
    ) -> list[VerificationEvent] | None:
        """`update` (the verification's row, written only if it is as its writer read
        it) and, if it wrote the row, `event` and the trail up to it as `append` returns
        them: one statement, so the row's lock is taken and released by its own write
        (outside a transaction) with nothing read before. None: the row had changed and
        nothing was written. PostgreSQL only (`guarded_update`)."""
        if event.pk is not None:
            raise ValueError("Verification events are append-only.")
        return self._append(event, connections[update.using], after=update)

    def _append(
        self, event: VerificationEvent, connection: Any, *, after: RowWrite | None
    ) -> list[VerificationEvent] | None:
        shape = _append_shape(connection)
        values = [
            field.get_db_prep_save(field.pre_save(event, add=True), connection)
            for field in shape.fields
        ]
        verification_id = VerificationEvent._meta.get_field("verification").get_db_prep_value(
            event.verification_id, connection
        )
        if after is None:
            sql, prefix = shape.plain, ()
        else:
            sql, prefix = f"WITH written AS ({after.sql}), {shape.after_written}", after.params
        with connection.cursor() as cursor:
            cursor.execute(sql, [*prefix, *values, verification_id])
            rows = cursor.fetchall()
        if after is not None:
            if not rows:
                return None
            after.written()
        # Rows as a queryset builds them (Django's column converters, then from_db), without
        # a raw queryset's per-statement mapping of columns to fields.
        trail: list[VerificationEvent] = []
        for *columns, appended in rows:
            if appended:
                event.pk = columns[shape.pk_index]
                event._state.adding = False
                event._state.db = connection.alias
                trail.append(event)
            else:
                values_of = row_converted(tuple(columns), shape.converters, connection)
                trail.append(VerificationEvent.from_db(connection.alias, shape.attnames, values_of))
        return trail


@dataclass(frozen=True)
class _AppendShape:
    """What an event's insert with its trail needs of a database, worked out once."""

    fields: list[Any]  # the inserted fields, in column order
    plain: str  # the INSERT (VALUES) with the trail
    after_written: str  # the same after a `written` CTE: inserted only if it has a row
    converters: dict[int, Any]
    attnames: list[str]
    pk_index: int


_append_shapes: dict[tuple[str, str], _AppendShape] = {}


def _append_shape(connection: Any) -> _AppendShape:
    key = (connection.alias, connection.vendor)
    shape = _append_shapes.get(key)
    if shape is not None:
        return shape
    meta = VerificationEvent._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    written = ", ".join(quote(field.column) for field in fields)
    every = ", ".join(quote(field.column) for field in meta.concrete_fields)
    verification_column = quote(meta.get_field("verification").column)
    columns = {field.name: field.column for field in meta.concrete_fields}
    order = ", ".join(quote(columns[name]) for name in ("created_at", "id"))
    placeholders = ", ".join(["%s"] * len(fields))
    # Typed, as VALUES would type them: a SELECT's own columns have no target type.
    typed = ", ".join(f"CAST(%s AS {field.cast_db_type(connection)})" for field in fields)
    # The statement's snapshot predates its own writes: the earlier events come from the
    # table, the new one from the CTE. Only quoted model names are interpolated.
    trail = f"SELECT {every}, false AS appended FROM {table} WHERE {verification_column} = %s "  # noqa: S608
    new = f"UNION ALL SELECT {every}, true AS appended FROM new ORDER BY {order}"  # noqa: S608
    attnames = [field.attname for field in meta.concrete_fields]
    shape = _append_shapes[key] = _AppendShape(
        fields=fields,
        plain=(
            f"WITH new AS (INSERT INTO {table} ({written}) VALUES ({placeholders}) "  # noqa: S608
            f"RETURNING {every}) {trail}{new}"
        ),
        after_written=(
            f"new AS (INSERT INTO {table} ({written}) SELECT {typed} FROM written "  # noqa: S608
            f"RETURNING {every}) {trail}AND EXISTS (SELECT 1 FROM written) {new}"
        ),
        converters=whole_row_converters(VerificationEvent, connection),
        attnames=attnames,
        pk_index=attnames.index(meta.pk.attname),
    )
    return shape


class VerificationEvent(models.Model):
    """Append-only audit trail: one row per transition."""

    verification = models.ForeignKey(Verification, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    # The verification's channel after this event (which channel a `sent` step used).
    channel = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = VerificationEventManager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("Verification events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("Verification events are append-only.")


class ProviderCallback(models.Model):
    """One signed status callback from the provider, stored before we answer 2xx.

    ``token_id`` (the JWT's ``jti``, or a hash of the token) is unique: a replayed token
    meets the constraint and changes nothing.
    """

    token_id = models.CharField(max_length=128, unique=True)
    request_id = models.CharField(max_length=64, db_index=True)
    verification = models.ForeignKey(
        Verification,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="provider_callbacks",
    )
    type = models.CharField(max_length=32)
    status = models.CharField(max_length=32, blank=True)
    body = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    # What applying it did, in words ("verified", "ignored: unknown request", ...).
    result = models.TextField(blank=True)

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self) -> str:
        return f"{self.type} {self.status} for {self.request_id}"


class SendPause(models.Model):
    """The conversion governor paused codes to a country or a mobile prefix.

    One row per trip: what it saw (codes sent and verified in its window), until when,
    and who lifted it early. The governor's own audit trail: rows are only ever added,
    and a lift only fills in ``lifted_at``/``lifted_by``.
    """

    country = models.CharField(max_length=2)
    # Empty: the whole country.
    prefix = models.CharField(max_length=16, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    until = models.DateTimeField()
    sent = models.PositiveIntegerField()
    verified = models.PositiveIntegerField()
    reason = models.TextField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["until"], name="send_pause_until")]

    def __str__(self) -> str:
        return f"{self.destination} paused until {self.until:%Y-%m-%d %H:%M}"

    @property
    def destination(self) -> str:
        return f"{self.country} {self.prefix}" if self.prefix else self.country

    def is_active(self, *, now: datetime | None = None) -> bool:
        return self.lifted_at is None and self.until > (now or timezone.now())

    @property
    def conversion(self) -> float:
        return self.verified / self.sent if self.sent else 0.0


class TrustedDeviceQuerySet(models.QuerySet["TrustedDevice"]):
    def active(self, *, now: datetime | None = None) -> TrustedDeviceQuerySet:
        """Devices that still stand in for a code: not forgotten, not expired."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())


class TrustedDevice(models.Model):
    """A browser the voter asked us to remember ("Remember this device" on the code page).

    Its cookie carries a random token; this row holds only the token's SHA-256, so the
    table hands out no device. The token changes on every use. A device is bound to the
    number verified when it was remembered (a keyed hash, as the session flag is): it
    stands in for a code only while that number is still the account's verified number.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trusted_devices"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    phone_hash = models.CharField(max_length=64)
    # "Chrome on Linux": what the account page calls it.
    label = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    times_used = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Why it stopped working ("forgotten", "password changed", ...), until the sweep.
    revoked_reason = models.CharField(max_length=64, blank=True)

    objects = TrustedDeviceQuerySet.as_manager()

    class Meta:
        ordering = ["-last_used_at", "-id"]
        indexes = [models.Index(fields=["user", "-last_used_at"])]

    def __str__(self) -> str:
        return f"{self.label} of user {self.user_id}"


# The reads a verification's life repeats (about a dozen per voter, web and workers),
# with Django's SQL compiled once per process: pollstr/db/prepared.py.
VERIFICATION_BY_ID: PreparedRead[Verification] = PreparedRead(Verification, "pk")
VERIFICATION_LOCKED: PreparedRead[Verification] = PreparedRead(Verification, "pk", for_update=True)
_OF_SESSION: PreparedRead[Verification] = PreparedRead(
    Verification, "pk", "user", "session_key_hash"
)
VERIFICATION_OF_USER: PreparedRead[Verification] = PreparedRead(Verification, "pk", "user")
_LIVE_OF_SESSION: PreparedRead[Verification] = PreparedRead(
    Verification, "user", "session_key_hash", refine=VerificationQuerySet.live
)
# The user's live verifications, locked (a new start supersedes them).
LIVE_OF_USER_LOCKED: PreparedRead[Verification] = PreparedRead(
    Verification, "user", for_update=True, refine=VerificationQuerySet.live
)
PHONE_NUMBER_OF_USER: PreparedRead[PhoneNumber] = PreparedRead(PhoneNumber, "user")


def phone_number_of(user: Any) -> PhoneNumber | None:
    """``user.phone_number``, None for none: read once per user object and kept where the
    relation keeps it (a later ``user.phone_number`` reads nothing), as the reverse
    one-to-one descriptor does, but through the prepared read instead of a queryset
    compiled on every request."""
    relation = PhoneNumber._meta.get_field("user").remote_field
    if relation.is_cached(user):
        return cast("PhoneNumber | None", relation.get_cached_value(user))
    phone = PHONE_NUMBER_OF_USER.first(user.pk) if user.pk is not None else None
    if phone is not None:
        relation.field.set_cached_value(phone, user)
    relation.set_cached_value(user, phone)
    return phone


# A verification's audit trail, in its order (VerificationEvent.Meta.ordering).
TRAIL_OF_VERIFICATION: PreparedRead[VerificationEvent] = PreparedRead(
    VerificationEvent, "verification"
)


def session_key_hash(session_key: str) -> str:
    """What a Verification stores of its session: never the key itself."""
    return hashlib.sha256(f"{settings.SECRET_KEY}:{session_key}".encode()).hexdigest()


def _session_owner(user: Any, session_key: str | None) -> tuple[Any, str] | None:
    """(user id, session key hash) of a signed-in user's session; None without one."""
    if not session_key or not getattr(user, "is_authenticated", False):
        return None
    return user.pk, session_key_hash(session_key)


def verification_of_session(
    verification_id: Any, *, user: Any, session_key: str | None
) -> Verification | None:
    """``Verification.objects.of_session(...).filter(pk=verification_id).first()``, prepared."""
    owner = _session_owner(user, session_key)
    return None if owner is None else _OF_SESSION.first(verification_id, *owner)


def live_of_session(*, user: Any, session_key: str | None) -> Verification | None:
    """The session's code on its way (at most one: one live verification per user)."""
    owner = _session_owner(user, session_key)
    return None if owner is None else _LIVE_OF_SESSION.first(*owner)
