"""The SMS budget: what codes may cost, per destination, and the conversion governor.

SMS pumping (toll fraud) is fresh accounts asking for codes to numbers whose carrier
shares what we pay for each SMS. The codes are never entered, so what gives it away is
volume to one destination with low *conversion* (codes verified ÷ codes sent). The
rate limits (two_factor/limits.py) bound each account, session, address and network;
this module bounds each destination:

- **Daily caps** per region in codes and in money (``TWO_FACTOR_SMS_PRICES`` × codes),
  and one for all regions in money, per UTC day. Counted when a code is asked for, in
  one Redis hash per day (one round trip; the in-process cache of the embedded default
  takes a lock instead). Like the limiter, it fails closed: no counter, no code.
- **The conversion governor.** A country, or a mobile prefix within it, that had at
  least its floor of codes sent in the window and fewer than ``threshold`` of them
  verified is paused for ``cooldown``: a :class:`~two_factor.models.SendPause` row
  (the governor's audit trail), a log line and the ``pollstr_sms_governor_paused``
  gauge. It is fed by the verifications themselves, however they ended: a code
  entered here, or the provider's event and summary callbacks
  (``two_factor.callbacks``), which settle the same rows. The send worker judges
  (:func:`governor_judge`, at most every ``evaluate_every`` seconds per prefix) and
  refuses to send to a paused destination; a start is refused at once with a sentence.
  Evidence a pause already answered is not judged again: after a pause ends (its
  cool-down, or an operator's lift in the admin), only codes sent since count.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from two_factor.limits import _redis_client
from two_factor.models import SendPause, Verification
from two_factor.numbers import region_name
from two_factor.services.refusals import VerificationRefused

logger = logging.getLogger(__name__)

_MICRO = 1_000_000  # money is counted in millionths of the currency unit
_PAUSES_KEY = "two_factor:budget:pauses"
_PAUSES_CACHE_SECONDS = 30


# --- daily caps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Caps:
    price: int  # micro-units per code
    sends: int
    spend: int  # micro-units, this region
    total: int  # micro-units, all regions

    @classmethod
    def of(cls, region: str) -> _Caps:
        def lookup(table: dict[str, float]) -> float:
            return table.get(region, table["*"])

        return cls(
            price=round(lookup(settings.TWO_FACTOR_SMS_PRICES) * _MICRO),
            sends=int(lookup(settings.TWO_FACTOR_COUNTRY_DAILY_SENDS)),
            spend=round(lookup(settings.TWO_FACTOR_COUNTRY_DAILY_SPEND) * _MICRO),
            total=round(settings.TWO_FACTOR_DAILY_SPEND * _MICRO),
        )


def _today(now: datetime | None = None) -> datetime:
    return (now or timezone.now()).astimezone(UTC)


def _day_key(now: datetime) -> str:
    return f"two_factor:budget:{now:%Y%m%d}"


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


# KEYS[1]: the day's hash. ARGV: region, price, sends cap, region spend cap, total cap, ttl.
# Returns 0 after counting the code, or which cap refused it (1 codes, 2 region, 3 all).
_RESERVE = """
local sends = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':sends') or '0')
local spend = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':spend') or '0')
local total = tonumber(redis.call('HGET', KEYS[1], '*:spend') or '0')
local price = tonumber(ARGV[2])
if sends + 1 > tonumber(ARGV[3]) then return 1 end
if spend + price > tonumber(ARGV[4]) then return 2 end
if total + price > tonumber(ARGV[5]) then return 3 end
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':sends', 1)
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':spend', price)
redis.call('HINCRBY', KEYS[1], '*:spend', price)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return 0
"""
_reserve_script: Any = None
_local_lock = threading.Lock()
_DAY_TTL = 2 * 86400  # the scrape reads today's; yesterday's lingers for a look


def _reserve(region: str, caps: _Caps, now: datetime) -> int:
    global _reserve_script
    key = _day_key(now)
    client: Any = _redis_client()
    if client is not None:
        if _reserve_script is None:
            _reserve_script = client.register_script(_RESERVE)
        args = [region, caps.price, caps.sends, caps.spend, caps.total, _DAY_TTL]
        return int(_reserve_script(keys=[cache.make_key(key)], args=args, client=client))
    with _local_lock:
        day: dict[str, int] = cache.get(key) or {}
        if day.get(f"{region}:sends", 0) + 1 > caps.sends:
            return 1
        if day.get(f"{region}:spend", 0) + caps.price > caps.spend:
            return 2
        if day.get("*:spend", 0) + caps.price > caps.total:
            return 3
        for field, amount in ((f"{region}:sends", 1), (f"{region}:spend", caps.price)):
            day[field] = day.get(field, 0) + amount
        day["*:spend"] = day.get("*:spend", 0) + caps.price
        cache.set(key, day, timeout=_DAY_TTL)
        return 0


def budget_reserve(*, country: str, now: datetime | None = None) -> None:
    """Count one code to ``country`` against today's caps, or refuse it with a sentence
    (VerificationRefused, retry after midnight UTC)."""
    now = _today(now)
    refused = _reserve(country, _Caps.of(country), now)
    if not refused:
        return
    cap = {1: "country_daily_sends", 2: "country_daily_spend", 3: "daily_spend"}[refused]
    if cache.add(f"two_factor:budget:logged:{now:%Y%m%d}:{country}:{cap}", 1, timeout=86400):
        logger.warning(
            "SMS budget: %s reached for %s; codes refused until midnight UTC", cap, country
        )
    _refused(cap, retry_after=_seconds_to_midnight(now))
    if refused == 3:
        message = gettext("We can't send any more codes today. Please try again tomorrow.")
    else:
        message = gettext(
            "We can't send any more codes to numbers in %(region)s today. "
            "Please try again tomorrow."
        ) % {"region": region_name(country)}
    raise VerificationRefused(message, retry_after=_seconds_to_midnight(now))


def budget_spent(*, now: datetime | None = None) -> dict[str, tuple[int, float]]:
    """Today's codes and money per region so far, and ``"*"`` for all regions (codes 0)."""
    now = _today(now)
    key = _day_key(now)
    client: Any = _redis_client()
    if client is not None:
        raw = {k.decode(): int(v) for k, v in client.hgetall(cache.make_key(key)).items()}
    else:
        raw = dict(cache.get(key) or {})
    spent: dict[str, tuple[int, float]] = {}
    for field, value in raw.items():
        region, _, kind = field.partition(":")
        sends, money = spent.get(region, (0, 0.0))
        if kind == "sends":
            sends = value
        else:
            money = value / _MICRO
        spent[region] = (sends, money)
    return spent


def _refused(name: str, *, retry_after: int) -> None:
    from two_factor.signals import rate_limit_refused

    rate_limit_refused.send_robust(sender=SendPause, name=name, retry_after=retry_after)


# --- the conversion governor -----------------------------------------------------------------


@dataclass(frozen=True)
class _Pause:
    country: str
    prefix: str
    until: float  # a timestamp

    def covers(self, country: str, prefix: str) -> bool:
        return self.country == country and self.prefix in ("", prefix)


def pauses_active(*, now: datetime | None = None) -> list[_Pause]:
    """The pauses in force, from the cache (kept at most 30 s, dropped on every trip and
    lift), else from the database."""
    moment = (now or timezone.now()).timestamp()
    cached = cache.get(_PAUSES_KEY)
    if cached is None:
        rows = SendPause.objects.filter(
            lifted_at__isnull=True, until__gt=timezone.now()
        ).values_list("country", "prefix", "until")
        cached = [_Pause(country, prefix, until.timestamp()) for country, prefix, until in rows]
        soonest = min((p.until - moment for p in cached), default=_PAUSES_CACHE_SECONDS)
        cache.set(_PAUSES_KEY, cached, timeout=max(1, min(_PAUSES_CACHE_SECONDS, int(soonest))))
    return [p for p in cached if p.until > moment]


def _pauses_changed() -> None:
    # Now, for this process's next look, and after the commit, for anyone who read the
    # old rows meanwhile.
    cache.delete(_PAUSES_KEY)
    transaction.on_commit(lambda: cache.delete(_PAUSES_KEY))


def governor_check(*, country: str, prefix: str, now: datetime | None = None) -> None:
    """Refuse a code to a paused destination, with a sentence (VerificationRefused)."""
    moment = (now or timezone.now()).timestamp()
    covering = [p for p in pauses_active(now=now) if p.covers(country, prefix)]
    if not covering:
        return
    wait = max(1, int(max(p.until for p in covering) - moment))
    _refused("governor_paused", retry_after=wait)
    minutes = max(1, round(wait / 60))
    raise VerificationRefused(
        # Said at once by a request; a send the governor stops stores it (in the language
        # active there: English in a worker).
        ngettext(
            "Codes to numbers like yours are paused for a while because of unusual traffic. "
            "Please try again in about %(minutes)d minute.",
            "Codes to numbers like yours are paused for a while because of unusual traffic. "
            "Please try again in about %(minutes)d minutes.",
            minutes,
        )
        % {"minutes": minutes},
        retry_after=wait,
    )


def governor_judge(*, country: str, prefix: str, now: datetime | None = None) -> SendPause | None:
    """Judge the conversion of codes lately sent to ``prefix`` and to its ``country``;
    pause either that has enough volume and too little conversion. Returns a new pause."""
    rules = settings.TWO_FACTOR_GOVERNOR
    every = rules["evaluate_every"]
    if every and not cache.add(f"two_factor:governor:judged:{prefix}", 1, timeout=every):
        return None  # judged a moment ago, by this worker or another
    now = now or timezone.now()
    window_start = now - timedelta(seconds=rules["window"])
    # Evidence a pause already answered is not judged again: each scope counts codes
    # sent since its latest pause ended (its cool-down, or an operator's lift).
    since = {"": window_start, prefix: window_start}
    for scope, until, lifted_at in SendPause.objects.filter(
        Q(until__gte=window_start) | Q(lifted_at__gte=window_start),
        country=country,
        prefix__in=("", prefix),
    ).values_list("prefix", "until", "lifted_at"):
        since[scope] = max(since[scope], min(lifted_at or until, now))
    country_since, prefix_since = since[""], since[prefix]
    settled = Q(verified_at__isnull=False)
    in_prefix = Q(prefix=prefix, sent_at__gte=prefix_since)
    in_country = Q(sent_at__gte=country_since)
    stats = Verification.objects.filter(
        country=country,
        sent_at__gte=min(country_since, prefix_since),
        sent_at__lte=now - timedelta(seconds=rules["grace"]),
    ).aggregate(
        country_sent=Count("pk", filter=in_country),
        country_verified=Count("pk", filter=in_country & settled),
        prefix_sent=Count("pk", filter=in_prefix),
        prefix_verified=Count("pk", filter=in_prefix & settled),
    )
    for scope, floor, sent, verified in (
        ("", rules["country_floor"], stats["country_sent"], stats["country_verified"]),
        (prefix, rules["prefix_floor"], stats["prefix_sent"], stats["prefix_verified"]),
    ):
        if sent >= floor and verified / sent < rules["threshold"]:
            return _trip(country=country, prefix=scope, sent=sent, verified=verified, now=now)
    return None


def _trip(
    *, country: str, prefix: str, sent: int, verified: int, now: datetime
) -> SendPause | None:
    rules = settings.TWO_FACTOR_GOVERNOR
    with transaction.atomic():
        if SendPause.objects.filter(
            country=country, prefix=prefix, lifted_at__isnull=True, until__gt=now
        ).exists():
            return None
        pause = SendPause.objects.create(
            country=country,
            prefix=prefix,
            started_at=now,
            until=now + timedelta(seconds=rules["cooldown"]),
            sent=sent,
            verified=verified,
            reason=(
                f"{verified} of {sent} codes verified ({verified / sent:.0%}) in the last "
                f"{rules['window'] // 60} minutes, under the {rules['threshold']:.0%} threshold"
            ),
        )
        _pauses_changed()
    logger.warning(
        "SMS governor: codes to %s paused until %s: %s",
        pause.destination,
        pause.until.isoformat(timespec="seconds"),
        pause.reason,
    )
    return pause


def governor_lift(*, pause: SendPause, by: Any) -> bool:
    """An operator lifts a pause early; False if it had already ended."""
    with transaction.atomic():
        now = timezone.now()
        lifted = SendPause.objects.filter(
            pk=pause.pk, lifted_at__isnull=True, until__gt=now
        ).update(lifted_at=now, lifted_by=by if getattr(by, "pk", None) else None)
        if lifted:
            _pauses_changed()
    if lifted:
        pause.refresh_from_db()
        logger.warning(
            "SMS governor: pause of %s lifted by %s", pause.destination, getattr(by, "username", by)
        )
    return bool(lifted)


# --- what operators watch --------------------------------------------------------------------


class BudgetCollector(Collector):
    """``pollstr_sms_governor_paused`` and ``pollstr_sms_spend_ratio``, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        try:
            pauses = pauses_active()
            spent = budget_spent()
        except Exception as error:  # a scrape must still answer when Redis or the DB is down
            logger.warning("SMS budget metrics unavailable: %s", type(error).__name__)
            return
        paused = GaugeMetricFamily(
            "pollstr_sms_governor_paused",
            "1 while the conversion governor pauses codes to a country (prefix empty) or "
            "a mobile prefix.",
            labels=["country", "prefix"],
        )
        for pause in pauses:
            paused.add_metric([pause.country, pause.prefix], 1.0)
        yield paused
        ratio = GaugeMetricFamily(
            "pollstr_sms_spend_ratio",
            "Share of today's (UTC) nearest SMS cap used, per region: the larger of codes "
            '÷ the region\'s code cap and money ÷ its spend cap; country="all" is the '
            "all-regions spend cap.",
            labels=["country"],
        )
        for region, (sends, money) in sorted(spent.items()):
            caps = _Caps.of(region)
            if region == "*":
                used = money * _MICRO / caps.total if caps.total else 1.0
            else:
                used = max(
                    sends / caps.sends if caps.sends else 1.0,
                    money * _MICRO / caps.spend if caps.spend else 1.0,
                )
            ratio.add_metric(["all" if region == "*" else region], used)
        yield ratio
