"""The periodic re-read of an open socket's session, scheduled by one timer per process
(two_factor/consumers.py, ``_Rechecks``) rather than by a sleeping task per socket."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from tests.polls.test_live_results import _closed_with, _verified_browser, _watching
from two_factor import consumers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _recheck_tasks() -> list[asyncio.Task]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").startswith("SessionBoundConsumer._recheck")
    ]


async def test_idle_sockets_wait_for_their_recheck_without_a_task_each(make_user, question):
    browsers = [
        await sync_to_async(_verified_browser)(await sync_to_async(make_user)(f"w{i}"))
        for i in range(3)
    ]
    sockets = [await _watching(browser, question) for browser in browsers]

    assert consumers.rechecks().pending() == 3
    assert _recheck_tasks() == []  # nothing sleeps per socket

    for communicator in sockets:
        await communicator.disconnect()
    assert consumers.rechecks().pending() == 0  # a closed socket is never re-read


async def test_a_session_deleted_after_rechecks_passed_closes_the_socket(
    make_user, question, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    browser = await sync_to_async(_verified_browser)(await sync_to_async(make_user)("watcher"))
    communicator = await _watching(browser, question)
    # A few re-reads pass (each schedules the next) while the session holds.
    await asyncio.sleep(0.6)
    assert await communicator.receive_nothing(timeout=0.1)  # still open

    # An operator deletes the session: no logout, no event; the next re-read ends it.
    await sync_to_async(browser.session.delete)()

    assert await _closed_with(communicator) == 4401


async def test_a_recheck_that_fails_once_is_tried_again(make_user, question, settings, monkeypatch):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    browser = await sync_to_async(_verified_browser)(await sync_to_async(make_user)("watcher"))
    communicator = await _watching(browser, question)
    real = consumers.session_now
    calls = []

    def flaky_then_gone(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise ConnectionError("the session store did not answer")
        return real(**kwargs)

    monkeypatch.setattr(consumers, "session_now", flaky_then_gone)
    await sync_to_async(browser.session.delete)()

    # The first re-read fails; the socket stays watched, and the next one closes it.
    assert await _closed_with(communicator) == 4401
    assert len(calls) >= 2
