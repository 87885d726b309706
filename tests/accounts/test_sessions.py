"""Sessions read through the cache, the database the record (accounts/sessions.py), on a
real Redis, and on one that is not there."""

from __future__ import annotations

import os
import uuid

import pytest
from django.contrib.sessions.models import Session

from accounts import sessions
from accounts.sessions import SessionStore
from tests import stack

pytestmark = [pytest.mark.redis, pytest.mark.django_db]


def _redis_cache(settings, url: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "pollstr.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"pollstr-test-sessions-{uuid.uuid4().hex}",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }


@pytest.fixture(autouse=True)
def _fresh_breaker(monkeypatch):
    monkeypatch.setattr(sessions, "_skip_cache_until", 0.0)


@pytest.fixture
def redis_up(settings):
    _redis_cache(settings, os.environ.get("TEST_REDIS_URL", stack.DEFAULT_TEST_REDIS_URL))


@pytest.fixture
def redis_gone(settings):
    # A loopback port nothing listens on: every cache call is refused.
    _redis_cache(settings, f"redis://127.0.0.1:{stack.free_port()}/0")


def _saved_session(**data: object) -> str:
    store = SessionStore()
    store.update(data)
    store.save(must_create=True)
    assert store.session_key
    return store.session_key


def test_a_saved_session_is_read_from_the_cache_without_a_query(
    redis_up, django_assert_num_queries
):
    key = _saved_session(colour="blue")
    assert Session.objects.filter(session_key=key).exists()  # the record
    with django_assert_num_queries(0):
        assert SessionStore(key)["colour"] == "blue"


def test_a_session_missing_from_the_cache_is_read_from_the_database_and_cached(
    redis_up, django_assert_num_queries
):
    key = _saved_session(colour="green")
    SessionStore()._cache.delete(SessionStore.cache_key_prefix + key)
    with django_assert_num_queries(1):
        assert SessionStore(key)["colour"] == "green"
    with django_assert_num_queries(0):
        assert SessionStore(key)["colour"] == "green"


def test_a_cached_entry_expires_within_session_cache_seconds(redis_up, settings):
    settings.SESSION_CACHE_SECONDS = 7
    key = _saved_session(colour="red")
    client = SessionStore()._cache._cache.get_client(write=True)
    ttl = client.ttl(
        SessionStore()._cache.make_and_validate_key(SessionStore.cache_key_prefix + key)
    )
    assert 0 < ttl <= 7


def test_a_deleted_session_is_gone_from_both(redis_up):
    key = _saved_session(colour="grey")
    SessionStore(key).delete()
    assert not Session.objects.filter(session_key=key).exists()
    assert SessionStore(key).load() == {}


def test_with_redis_gone_sessions_still_save_load_and_delete(redis_gone, caplog):
    key = _saved_session(colour="teal")  # saved to the database; the cache write is logged
    assert Session.objects.filter(session_key=key).exists()
    assert SessionStore(key)["colour"] == "teal"
    SessionStore(key).delete()
    assert not Session.objects.filter(session_key=key).exists()
    assert "Session cache unreachable" in caplog.text


def test_after_a_failed_read_the_process_reads_the_database_for_a_while(
    redis_gone, settings, monkeypatch
):
    key = _saved_session(colour="olive")
    calls = []
    original = SessionStore.load

    def counting_get(self, *args, **kwargs):
        calls.append(args)
        raise ConnectionError("refused")

    assert SessionStore(key)["colour"] == "olive"  # the first read pays the failure
    cache = SessionStore()._cache
    monkeypatch.setattr(type(cache), "get", counting_get)
    for _ in range(3):
        assert original(SessionStore(key))["colour"] == "olive"
    assert calls == []  # the breaker kept the cache out of the next reads


def test_keys_we_never_issue_reach_neither_store(redis_up, django_assert_num_queries):
    store = SessionStore('abcdefgh"\x00')
    with django_assert_num_queries(0):
        assert store.get("colour") is None
    assert store.session_key is None


@pytest.mark.django_db(transaction=True)
def test_a_save_outside_a_transaction_is_one_statement_and_keeps_djangos_errors(
    redis_up, monkeypatch
):
    """No BEGIN/COMMIT around the one INSERT or UPDATE in autocommit; a taken key is
    still CreateError and a vanished row UpdateError, as Django's own store says."""
    from django.contrib.sessions.backends.base import CreateError, UpdateError
    from django.db import transaction

    entered: list[object] = []
    real_enter = transaction.Atomic.__enter__

    def counting(self):
        entered.append(self)
        return real_enter(self)

    monkeypatch.setattr(transaction.Atomic, "__enter__", counting)
    store = SessionStore()
    store["a"] = 1
    store.save()
    store["a"] = 2
    store.save()
    assert entered == []
    assert SessionStore(store.session_key).load() == {"a": 2}

    taken = SessionStore(store.session_key)
    taken._session_cache = {"b": 1}
    with pytest.raises(CreateError):
        taken.save(must_create=True)
    Session.objects.filter(session_key=store.session_key).delete()
    with pytest.raises(UpdateError):
        store.save()


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_a_taken_key_leaves_it_usable(redis_up):
    from django.contrib.sessions.backends.base import CreateError
    from django.db import transaction

    first = SessionStore()
    first["a"] = 1
    first.save()
    with transaction.atomic():
        taken = SessionStore(first.session_key)
        taken._session_cache = {"b": 1}
        with pytest.raises(CreateError):
            taken.save(must_create=True)
        assert Session.objects.filter(session_key=first.session_key).exists()


@pytest.mark.django_db(transaction=True)
def test_a_new_key_is_written_once_and_the_old_one_stops_working_at_once(redis_up):
    """cycle_key() (login, a completed verification): the old key's row is gone at
    once; the new key is one INSERT when the response saves, not an INSERT and then an
    UPDATE."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    store = SessionStore()
    store["a"] = 1
    store.save()
    old_key = store.session_key

    with CaptureQueriesContext(connection) as queries:
        store.cycle_key()
        store["b"] = 2  # what login() does next
        store.save()  # the response

    statements = [query["sql"].split()[0] for query in queries]
    assert statements == ["DELETE", "INSERT"], statements
    assert store.session_key != old_key
    assert not Session.objects.filter(session_key=old_key).exists()
    assert SessionStore(old_key).load() == {}
    assert SessionStore(store.session_key).load() == {"a": 1, "b": 2}

    store["c"] = 3
    store.save()  # an ordinary save afterwards updates the row
    assert SessionStore(store.session_key).load() == {"a": 1, "b": 2, "c": 3}


def test_a_replaced_key_reads_as_no_session_and_a_write_draws_a_new_key(redis_up):
    store = SessionStore()
    store["secret"] = "kept for the new key only"
    store.save()
    old_key = store.session_key
    store.cycle_key()
    store.save()

    late = SessionStore(old_key)
    assert late.load() == {}
    assert late.rotated_away
    late["colour"] = "plum"
    late.save()
    assert late.session_key not in (old_key, store.session_key)
    assert SessionStore(late.session_key).load() == {"colour": "plum"}
    assert SessionStore(old_key).load() == {}  # still only the marker
    # A plain delete (logout) leaves no marker: a request with that key is simply unknown.
    store.delete()
    gone = SessionStore(store.session_key)
    assert gone.load() == {}
    assert not gone.rotated_away
