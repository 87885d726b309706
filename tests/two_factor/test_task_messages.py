"""What a task message shows to whoever operates the queue, read off a real Redis broker."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pollstr.celery import app
from tasks.verification import CODE_MASK, check_code, send_code

pytestmark = pytest.mark.redis

URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def queued() -> Iterator[tuple[Any, str]]:
    """A producer connection to the test Redis and a queue of this test's own."""
    queue = f"pollstr-test-messages-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(URL)
    with app.connection_for_write(URL) as connection:
        yield connection, queue
    client.delete(queue)
    client.close()


def _messages(queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(URL)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def _args(message: dict[str, Any]) -> list[Any]:
    return json.loads(base64.b64decode(message["body"]))[0]


def test_a_check_message_carries_the_code_in_its_body_but_never_prints_it(queued) -> None:
    connection, queue = queued
    verification_id = str(uuid.uuid4())
    check_code.apply_async((verification_id, "482913"), connection=connection, queue=queue)
    # A retry re-sends through a signature of the task, the same way.
    check_code.s(verification_id, "482913").apply_async(connection=connection, queue=queue)

    messages = _messages(queue)
    assert len(messages) == 2
    for message in messages:
        assert _args(message) == [verification_id, "482913"]  # what the worker needs
        headers = message["headers"]
        assert headers["task"] == "two_factor.check_code"
        assert "482913" not in json.dumps(headers)
        assert headers["argsrepr"] == repr((verification_id, CODE_MASK))


def test_a_code_passed_by_name_is_masked_too(queued) -> None:
    connection, queue = queued
    verification_id = str(uuid.uuid4())
    check_code.apply_async(
        kwargs={"verification_id": verification_id, "code": "482913"},
        connection=connection,
        queue=queue,
    )

    (message,) = _messages(queue)
    assert json.loads(base64.b64decode(message["body"]))[1]["code"] == "482913"
    assert "482913" not in json.dumps(message["headers"])


def test_other_tasks_messages_keep_their_arguments_printable(queued) -> None:
    connection, queue = queued
    verification_id = str(uuid.uuid4())
    send_code.apply_async((verification_id,), connection=connection, queue=queue)

    (message,) = _messages(queue)
    assert message["headers"]["argsrepr"] == repr((verification_id,))
