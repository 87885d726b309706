from __future__ import annotations

import threading

import pytest
from django.core.cache import cache, caches
from django.core.exceptions import ImproperlyConfigured

from tests.clock import FakeClock
from two_factor import limits
from two_factor.limits import RateLimited, limit_check, limit_hit, limits_hit

# A moment exactly 100 s into an hour-long window, so window ends are easy to reason about.
START = 1_800_000_000.0 - (1_800_000_000 % 3600) + 100


@pytest.fixture(autouse=True)
def rate_limits(settings) -> None:
    settings.TWO_FACTOR_RATE_LIMITS = {
        "per_user": (3, 3600),
        "per_ip": (5, 3600),
        "per_minute": (2, 60),
        "burst": (5, 3600),
    }


@pytest.fixture(autouse=True)
def clear_cache() -> None:
    # Only before the test: afterwards the default cache may still be the shared Redis
    # test database, which other tests use too, and clearing it would flush them all.
    cache.clear()


@pytest.fixture
def clock(clock: FakeClock) -> FakeClock:
    """The shared clock, moved to START."""
    clock.travel_to(START)
    return clock


def test_allows_the_max_then_refuses_with_retry_after_and_a_message(clock) -> None:
    for _ in range(3):
        limit_hit(name="per_user", key="alice")
    with pytest.raises(RateLimited) as info:
        limit_hit(name="per_user", key="alice")
    # The window ends in 3,500 s; the refused event counted too, so the three allowed
    # ones must slide a quarter of the next window out: 3,500 + 900 (+1, strictly after).
    assert info.value.retry_after == 4401
    assert info.value.message == "Too many attempts. Try again in 74 minutes."
    assert str(info.value) == info.value.message
    assert info.value.name == "per_user"


def test_retry_after_is_rounded_up_to_whole_seconds(clock) -> None:
    clock.advance(0.25)
    for _ in range(2):
        limit_hit(name="per_minute", key="alice")
    with pytest.raises(RateLimited) as info:
        limit_hit(name="per_minute", key="alice")
    # 100.25 s into the hour is 40.25 s into the minute: 19.75 s left, then a third of
    # the next minute (three counted, two allowed) rounds up to 20 + 20 + 1.
    assert info.value.retry_after == 41


def test_refused_events_still_count(clock) -> None:
    for _ in range(2):
        limit_hit(name="per_minute", key="alice")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limit_hit(name="per_minute", key="alice")
    # Halfway into the next minute: the two allowed events alone would weigh 1 (< 2),
    # but all seven weigh 3.5: hammering a limit keeps it shut.
    clock.advance(19.75 + 30)
    with pytest.raises(RateLimited):
        limit_check(name="per_minute", key="alice")


def test_the_limit_reopens_at_retry_after_without_a_burst_at_the_boundary(clock) -> None:
    for _ in range(2):
        limit_hit(name="per_minute", key="alice")
    with pytest.raises(RateLimited) as info:
        limit_hit(name="per_minute", key="alice")
    clock.advance(info.value.retry_after - 1)
    with pytest.raises(RateLimited):
        limit_check(name="per_minute", key="alice")
    clock.advance(1)
    limit_check(name="per_minute", key="alice")
    limit_hit(name="per_minute", key="alice")
    # A fixed window would allow two more here: the sliding one still sees the last minute.
    with pytest.raises(RateLimited):
        limit_hit(name="per_minute", key="alice")


def test_a_full_window_has_slid_out_after_two_windows(clock) -> None:
    for _ in range(2):
        limit_hit(name="per_minute", key="alice")
    clock.advance(60 + 60)
    limit_hit(name="per_minute", key="alice")
    limit_hit(name="per_minute", key="alice")


def test_different_keys_are_independent(clock) -> None:
    for _ in range(3):
        limit_hit(name="per_user", key="alice")
    with pytest.raises(RateLimited):
        limit_hit(name="per_user", key="alice")
    limit_hit(name="per_user", key="bob")


def test_different_names_are_independent(clock) -> None:
    for _ in range(3):
        limit_hit(name="per_user", key="same")
    with pytest.raises(RateLimited):
        limit_hit(name="per_user", key="same")
    limit_hit(name="per_ip", key="same")


def test_check_does_not_count(clock) -> None:
    for _ in range(10):
        limit_check(name="per_user", key="alice")
    for _ in range(3):
        limit_hit(name="per_user", key="alice")
    with pytest.raises(RateLimited) as info:
        limit_check(name="per_user", key="alice")
    assert info.value.retry_after == 3501


def test_limits_hit_counts_every_limit(clock) -> None:
    for _ in range(3):
        limits_hit(events=[("per_user", "alice"), ("per_ip", "10.0.0.1")])
    with pytest.raises(RateLimited):
        limit_check(name="per_user", key="alice")
    for _ in range(2):
        limit_hit(name="per_ip", key="10.0.0.1")
    with pytest.raises(RateLimited):
        limit_check(name="per_ip", key="10.0.0.1")


def test_limits_hit_refuses_without_burning_the_other_counters(clock) -> None:
    for _ in range(3):
        limit_hit(name="per_user", key="alice")
    for _ in range(10):
        with pytest.raises(RateLimited):
            limits_hit(events=[("per_ip", "10.0.0.1"), ("per_user", "alice")])
    # The IP's five events are all still there for someone else behind it.
    for _ in range(5):
        limit_hit(name="per_ip", key="10.0.0.1")
    with pytest.raises(RateLimited):
        limit_hit(name="per_ip", key="10.0.0.1")


def test_limits_hit_reports_the_longest_wait(clock) -> None:
    for _ in range(2):
        limit_hit(name="per_minute", key="alice")
    for _ in range(3):
        limit_hit(name="per_user", key="alice")
    with pytest.raises(RateLimited) as info:
        limits_hit(events=[("per_minute", "alice"), ("per_user", "alice")])
    assert info.value.name == "per_user"
    assert info.value.retry_after == 4401


def test_unknown_name_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="no_such_limit"):
        limit_hit(name="no_such_limit", key="alice")
    with pytest.raises(ImproperlyConfigured):
        limit_check(name="no_such_limit", key="alice")
    with pytest.raises(ImproperlyConfigured):
        limits_hit(events=[("per_user", "alice"), ("no_such_limit", "alice")])
    # The known limit in the batch was not counted before the unknown one failed.
    for _ in range(3):
        limit_hit(name="per_user", key="alice")


@pytest.mark.parametrize("bad", [(0, 60), (5, 0), (5,), "5/60", (5.0, 60)])
def test_malformed_limit_is_improperly_configured(settings, bad: object) -> None:
    settings.TWO_FACTOR_RATE_LIMITS = {"bad": bad}
    with pytest.raises(ImproperlyConfigured):
        limit_hit(name="bad", key="alice")


def test_the_settings_shipped_limits_are_well_formed(settings) -> None:
    from pollstr import settings as shipped

    settings.TWO_FACTOR_RATE_LIMITS = shipped.TWO_FACTOR_RATE_LIMITS
    for name in shipped.TWO_FACTOR_RATE_LIMITS:
        limit_check(name=name, key="alice")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (89, "89 seconds"),
        (90, "2 minutes"),
        (240, "4 minutes"),
        (241, "5 minutes"),
        (3599, "60 minutes"),
        (5399, "90 minutes"),
        (5400, "2 hours"),
        (3600 * 24, "24 hours"),
    ],
)
def test_message_gives_a_human_duration(seconds: int, words: str) -> None:
    refusal = RateLimited(name="per_user", retry_after=seconds)
    assert refusal.message == f"Too many attempts. Try again in {words}."


def test_retry_after_is_at_least_one_second() -> None:
    assert RateLimited(name="per_user", retry_after=0).retry_after == 1


def test_keys_are_hashed_in_the_cache(clock) -> None:
    limit_hit(name="per_ip", key="203.0.113.9")
    window = limits._Window.of(name="per_ip", key="203.0.113.9", now=limits._now())
    assert "203.0.113.9" not in window.cache_key
    assert cache.get(window.cache_key) == 1


def hammer(*, threads: int) -> int:
    """Hit the 'burst' limit (5) from many threads at once; return how many got through."""
    barrier = threading.Barrier(threads)
    allowed: list[bool] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            barrier.wait()
            limit_hit(name="burst", key="alice")
        except RateLimited:
            allowed.append(False)
        except BaseException as exc:
            errors.append(exc)
        else:
            allowed.append(True)
        finally:
            caches.close_all()

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not errors
    assert len(allowed) == threads
    return sum(allowed)


def test_concurrent_hits_let_exactly_the_max_through(clock) -> None:
    assert hammer(threads=20) == 5


@pytest.mark.redis
def test_concurrent_hits_let_exactly_the_max_through_on_redis(redis_cache, clock) -> None:
    client, prefix = redis_cache
    assert hammer(threads=20) == 5
    window = limits._Window.of(name="burst", key="alice", now=limits._now())
    stored = caches["default"].make_key(window.cache_key)
    assert stored.startswith(f"{prefix}:")
    assert client.exists(stored)
    assert int(client.get(stored)) == 20
    assert 0 < client.ttl(stored) <= window.timeout


@pytest.mark.redis
def test_on_redis_one_request_is_one_round_trip_and_refuses_without_burning(
    redis_cache, clock, monkeypatch
) -> None:
    import redis

    for _ in range(3):
        limit_hit(name="per_user", key="alice")
    calls: list[str] = []
    original = redis.Redis.execute_command

    def counting(self: object, *args: object, **kwargs: object) -> object:
        calls.append(str(args[0]))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    with pytest.raises(RateLimited) as info:
        limits_hit(events=[("per_ip", "10.0.0.1"), ("per_user", "alice"), ("burst", "x")])
    assert calls == ["EVALSHA"]  # three limits, one command
    assert info.value.name == "per_user"
    for _ in range(5):  # the IP's allowance is untouched
        limit_hit(name="per_ip", key="10.0.0.1")
    with pytest.raises(RateLimited):
        limit_hit(name="per_ip", key="10.0.0.1")


@pytest.mark.redis
def test_on_redis_the_window_slides_like_in_process(redis_cache, clock) -> None:
    for _ in range(2):
        limit_hit(name="per_minute", key="alice")
    with pytest.raises(RateLimited) as info:
        limit_hit(name="per_minute", key="alice")
    clock.advance(info.value.retry_after)
    limit_hit(name="per_minute", key="alice")
    with pytest.raises(RateLimited):
        limit_hit(name="per_minute", key="alice")
