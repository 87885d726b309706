"""tasks.verification: retry policy, backoff and task options around the services."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from tasks import verification as verification_tasks
from tasks.verification import retry_countdown
from tests.phone_numbers import NUMBER
from tests.two_factor.verifications import (
    default_workflow,
    latest_code,
    start_verification,
    submit_code,
    wrong_code_for,
)
from two_factor import services
from two_factor.gateways.sandbox import SandboxGateway, sandbox_fail_next, sandbox_messages_for
from two_factor.models import Status, Verification
from two_factor.status import status_render

pytestmark = pytest.mark.usefixtures("eager_retries")

RETRYING_TASKS = [
    verification_tasks.send_code,
    verification_tasks.check_code,
    verification_tasks.next_channel,
    verification_tasks.cancel_request,
]
# The retry policy the product promises: five retries after the first try.
MAX_RETRIES = 5


@pytest.fixture
def production_backoff(settings):
    settings.TASK_RETRY_BASE_DELAY = 2.0
    settings.TASK_RETRY_MAX_DELAY = 60.0
    settings.CELERY_BROKER_VISIBILITY_TIMEOUT = 3600
    return settings


# --- backoff -------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", range(21))
@pytest.mark.parametrize(
    ("base", "maximum", "visibility"),
    [(2.0, 60.0, 3600), (2.0, 600.0, 60), (60.0, 600.0, 60), (0.01, 0.05, 3600)],
)
def test_every_retry_countdown_stays_below_the_visibility_timeout(
    settings, retries, base, maximum, visibility
):
    settings.TASK_RETRY_BASE_DELAY = base
    settings.TASK_RETRY_MAX_DELAY = maximum
    settings.CELERY_BROKER_VISIBILITY_TIMEOUT = visibility

    countdowns = [retry_countdown(retries) for _ in range(20)]

    assert all(0 < countdown < visibility for countdown in countdowns)
    assert all(countdown <= maximum for countdown in countdowns)


@pytest.mark.parametrize("retries", [0, 3, 20])
def test_retry_countdowns_are_jittered(production_backoff, retries):
    countdowns = {retry_countdown(retries) for _ in range(50)}

    assert len(countdowns) > 1


def test_retry_countdowns_grow_exponentially_until_the_cap(production_backoff):
    first = [retry_countdown(0) for _ in range(50)]
    fourth = [retry_countdown(3) for _ in range(50)]
    late = [retry_countdown(20) for _ in range(50)]

    assert all(1.0 <= c <= 2.0 for c in first)
    assert all(8.0 <= c <= 16.0 for c in fourth)
    assert all(30.0 <= c <= 60.0 for c in late)


@pytest.mark.parametrize("retries", range(MAX_RETRIES + 1))
def test_with_the_projects_settings_every_retry_comes_before_the_broker_redelivers(retries):
    # The visibility timeout the broker is actually given, not the setting's name for it.
    from pollstr.celery import app

    visibility = app.conf.broker_transport_options["visibility_timeout"]

    assert all(retry_countdown(retries) < visibility for _ in range(20))


# --- task options --------------------------------------------------------------------------


@pytest.mark.parametrize("task", RETRYING_TASKS, ids=lambda task: task.name)
def test_a_retrying_task_is_acknowledged_only_after_it_ran(task):
    # A worker that dies mid-task leaves the message on the broker to be redelivered;
    # eager tasks have no broker, so the option itself is what can be checked here.
    assert task.acks_late is True


def test_task_time_limits_come_from_the_environment_not_the_task_code():
    # A fresh interpreter, so the tasks are defined under the overridden settings.
    import os
    import subprocess
    import sys

    env = {**os.environ, "CELERY_TASK_SOFT_TIME_LIMIT": "11", "CELERY_TASK_TIME_LIMIT": "17"}
    script = (
        "import django; django.setup();"
        "from tasks import verification as v;"
        "print([(t.soft_time_limit, t.time_limit) for t in "
        "(v.send_code, v.check_code, v.next_channel, v.cancel_request, v.reconcile)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str([(11, 17)] * 5)


# --- task names: declared once, beside the tasks; every one in use is registered ------------


def _registered_tasks():
    """The tasks a worker registers: the modules it imports (settings.CELERY_IMPORTS)."""
    from pollstr.celery import app

    app.loader.import_default_modules()
    return app.tasks


def _performed_names() -> dict[str, str]:
    from two_factor.services.delivery import OPERATIONS, _task

    return {operation: _task(operation).name for operation in OPERATIONS}


def test_every_operation_a_service_enqueues_is_performed_by_a_registered_task():
    registered = _registered_tasks()

    performed = _performed_names()

    assert set(performed) == {"send", "check", "next_channel", "cancel"}
    assert all(name in registered for name in performed.values()), performed
    assert {registered[name] for name in performed.values()} == set(RETRYING_TASKS)


def test_each_operation_is_performed_by_its_own_task():
    performed = _performed_names()

    assert len(set(performed.values())) == len(performed)


def test_beat_schedules_and_the_routes_name_only_registered_tasks():
    from pollstr.celery import app

    registered = _registered_tasks()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    routed = set(app.conf.task_routes)

    assert scheduled == {"two_factor.reconcile", "two_factor.purge_old_records"}
    assert routed  # check codes have their own queue
    assert not (scheduled | routed) - set(registered)


def test_every_task_of_ours_is_enqueued_by_a_service_or_scheduled_by_beat():
    # A task nothing sends is dead code a worker still accepts: it goes.
    from pollstr.celery import app

    ours = {name for name in _registered_tasks() if not name.startswith("celery.")}
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}

    assert ours == set(_performed_names().values()) | scheduled


def test_an_operation_no_task_performs_is_refused_plainly(monkeypatch):
    from two_factor.services import delivery

    monkeypatch.setattr(delivery, "_performers", {})

    with pytest.raises(ImproperlyConfigured, match="No task performs the 'send' operation"):
        delivery._enqueue("send", "an-id")


def test_a_second_task_for_the_same_operation_is_refused(monkeypatch):
    from two_factor.services import delivery

    monkeypatch.setattr(delivery, "_performers", {"send": verification_tasks.send_code})

    with pytest.raises(ImproperlyConfigured, match="Two tasks perform the 'send' operation"):
        delivery.performs("send")(verification_tasks.check_code)


# --- sending with retries ------------------------------------------------------------------


def _statuses(verification: Verification) -> list[str]:
    return [event.to_status for event in verification.events.all()]


@pytest.mark.parametrize("failures", [1, 3, MAX_RETRIES])
def test_a_send_that_fails_transiently_fewer_times_than_allowed_ends_sent_once(
    user, phone, client, django_capture_on_commit_callbacks, failures
):
    sandbox_fail_next("start", failures)

    verification = start_verification(client, user, django_capture_on_commit_callbacks)

    assert verification.status == Status.SENT
    assert verification.send_attempts == failures + 1
    assert len(sandbox_messages_for(NUMBER)) == 1
    # Retries are not state changes: the trail shows one send.
    assert _statuses(verification) == [Status.QUEUED, Status.SENDING, Status.SENT]


@pytest.mark.parametrize("failures", [MAX_RETRIES + 1, 20])
def test_a_send_that_keeps_failing_transiently_gives_up_with_a_sentence(
    user, phone, client, django_capture_on_commit_callbacks, failures
):
    sandbox_fail_next("start", failures)

    verification = start_verification(client, user, django_capture_on_commit_callbacks)

    assert verification.status == Status.FAILED
    assert verification.send_attempts == MAX_RETRIES + 1
    assert verification.failure_reason == (
        "We couldn't reach our verification provider after several tries. "
        "Please ask for a new code in a minute."
    )
    assert sandbox_messages_for(NUMBER) == []


def test_a_send_task_redelivered_under_another_id_sends_nothing(
    user, phone, client, django_capture_on_commit_callbacks
):
    verification = start_verification(client, user, django_capture_on_commit_callbacks)

    verification_tasks.send_code.apply(args=(str(verification.pk),), task_id="redelivered")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_a_send_task_redelivered_after_a_crash_adopts_the_providers_request(
    phone, make_verification
):
    # The first delivery claimed the send and reached the provider, then its worker died.
    verification = make_verification(Status.SENDING, send_claim="task-1", send_attempts=1)
    live_id = SandboxGateway().start(
        number=NUMBER, client_ref=verification.pk.hex, workflow=default_workflow()
    )

    verification_tasks.send_code.apply(args=(str(verification.pk),), task_id="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.request_id == live_id
    assert len(sandbox_messages_for(NUMBER)) == 1


# --- checking, switching channels, cancelling with retries ---------------------------------


def test_a_check_that_fails_transiently_is_retried_to_a_verdict(
    sent, django_capture_on_commit_callbacks
):
    sandbox_fail_next("check", 2)

    verification = submit_code(sent, latest_code(), django_capture_on_commit_callbacks)

    assert verification.status == Status.VERIFIED


def test_a_check_that_keeps_failing_lets_the_person_try_again_without_counting(
    sent, django_capture_on_commit_callbacks
):
    sandbox_fail_next("check", MAX_RETRIES + 1)

    verification = submit_code(sent, latest_code(), django_capture_on_commit_callbacks)

    assert verification.status == Status.SENT
    assert verification.wrong_codes == 0
    assert verification.events.last().reason.startswith("check not possible now")
    # The voter is told, not left on "Code sent by SMS." as if nothing had happened.
    assert verification.notice == services.CHECK_AGAIN
    page = status_render(RequestFactory().get("/"), verification)
    assert services.CHECK_AGAIN.replace("'", "&#x27;") in page
    # The code is still good at the provider.
    verification = submit_code(verification, latest_code(), django_capture_on_commit_callbacks)
    assert verification.status == Status.VERIFIED


def test_a_wrong_code_is_counted_once_even_after_transient_retries(
    sent, django_capture_on_commit_callbacks
):
    sandbox_fail_next("check", 2)

    verification = submit_code(
        sent, wrong_code_for(latest_code()), django_capture_on_commit_callbacks
    )

    assert (verification.status, verification.wrong_codes) == (Status.SENT, 1)


def test_a_call_request_that_fails_transiently_is_retried(sent, django_capture_on_commit_callbacks):
    sandbox_fail_next("next_channel", 2)

    with django_capture_on_commit_callbacks(execute=True):
        services.verification_switch_channel(verification=sent, channel="voice")

    sent.refresh_from_db()
    assert (sent.status, sent.channel) == (Status.SENT, "voice")
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["voice", "sms"]


def test_a_call_request_that_keeps_failing_leaves_the_sms_step(
    sent, django_capture_on_commit_callbacks
):
    sandbox_fail_next("next_channel", MAX_RETRIES + 1)

    with django_capture_on_commit_callbacks(execute=True):
        services.verification_switch_channel(verification=sent, channel="voice")

    sent.refresh_from_db()
    assert (sent.status, sent.channel) == (Status.SENT, "sms")
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["sms"]


def test_a_provider_cancel_that_fails_transiently_is_retried(sent):
    sandbox_fail_next("cancel", 2)

    verification_tasks.cancel_request.apply(args=(sent.request_id,))

    assert SandboxGateway().emulator.status(sent.request_id) is None


def test_the_sweep_task_moves_a_timed_out_sms_step_to_the_call(sent, clock):
    clock.advance((sent.channel_deadline - clock.datetime()).total_seconds() + 1)

    verification_tasks.reconcile.apply()

    sent.refresh_from_db()
    assert (sent.status, sent.channel) == (Status.SENT, "voice")


def test_a_call_that_cannot_be_started_after_retries_is_said_not_silent(
    sent, django_capture_on_commit_callbacks
):
    sandbox_fail_next("next_channel", MAX_RETRIES + 1)

    with django_capture_on_commit_callbacks(execute=True):
        services.verification_switch_channel(verification=sent, channel="voice")

    sent.refresh_from_db()
    # The SMS step's deadline still brings the call.
    assert (sent.status, sent.channel) == (Status.SENT, "sms")
    assert sent.notice == services.SWITCH_NOT_DONE
    last = sent.events.last()
    assert (last.from_status, last.to_status) == (Status.SENT, Status.SENT)
    assert last.reason.startswith("switch not done")


def test_a_provider_cancel_that_keeps_failing_is_recorded_on_the_trail(
    sent, django_capture_on_commit_callbacks
):
    services.transition(sent, Status.CANCELLED, reason="test")
    sandbox_fail_next("cancel", MAX_RETRIES + 1)

    verification_tasks.cancel_request.apply(args=(sent.request_id,))

    assert sent.events.last().reason.startswith("provider cancel not done")
