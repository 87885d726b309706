"""The Verify v2 emulator the sandbox gateway and the HTTPS double of Verify both run on."""

from __future__ import annotations

from typing import Any

import pytest

from tests import phone_numbers
from tests.clock import FakeClock
from tests.phone_numbers import provider_digits
from two_factor.gateways.sandbox.emulator import (
    COMPLETED,
    EXPIRED,
    FAILED,
    IN_PROGRESS,
    ConcurrentVerification,
    InvalidParams,
    NoMoreEvents,
    NotFound,
    TooManyWrongCodes,
    VerifyEmulator,
    WrongCode,
)
from two_factor.gateways.sandbox.store import MemoryStore

# The emulator speaks the provider's format: E.164 digits without the +.
NUMBER = provider_digits(phone_numbers.NUMBER)
OTHER_NUMBER = provider_digits(phone_numbers.OTHER_NUMBER)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


@pytest.fixture
def emulator(clock: FakeClock, sent: Recorder) -> VerifyEmulator:
    return VerifyEmulator(
        MemoryStore(),
        clock=clock,
        on_message=sent.messages.append,
        on_callback=sent.callbacks.append,
    )


def start(emulator: VerifyEmulator, to: str = NUMBER, **kwargs: Any) -> str:
    options: dict[str, Any] = {"brand": "Pollstr", "code_length": 6, "channel_timeout": 60}
    return emulator.start(to=to, **(options | kwargs))


def test_start_sends_an_sms_with_a_numeric_code_of_the_requested_length(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    request_id = start(emulator, code_length=8)

    [message] = sent.messages
    assert message["request_id"] == request_id
    assert message["channel"] == "sms"
    assert message["to"] == NUMBER
    assert len(message["code"]) == 8
    assert message["code"].isdigit()
    assert emulator.status(request_id) == IN_PROGRESS
    assert emulator.current_channel(request_id) == "sms"


def test_codes_differ_between_requests(emulator: VerifyEmulator, sent: Recorder) -> None:
    for i in range(5):
        start(emulator, to=f"3361234567{i}", code_length=10)

    assert len({message["code"] for message in sent.messages}) == 5


@pytest.mark.parametrize(
    ("overrides", "parameters"),
    [
        ({"code_length": 3}, ["code_length"]),
        ({"code_length": 11}, ["code_length"]),
        ({"channel_timeout": 14}, ["channel_timeout"]),
        ({"brand": "Poll$tr"}, ["brand"]),
        ({"brand": "x" * 19}, ["brand"]),
        ({"to": phone_numbers.NUMBER}, ["workflow[0].to", "workflow[1].to"]),
        ({"to": "0612345678"}, ["workflow[0].to", "workflow[1].to"]),
        ({"client_ref": "not-alphanumeric"}, ["client_ref"]),
        ({"channels": ("pigeon",)}, ["workflow[0].channel"]),
    ],
)
def test_invalid_start_parameters_are_refused_with_422_naming_the_parameter(
    emulator: VerifyEmulator, sent: Recorder, overrides: dict[str, Any], parameters: list[str]
) -> None:
    with pytest.raises(InvalidParams) as refused:
        start(emulator, **overrides)

    assert refused.value.status == 422
    assert [p["name"] for p in refused.value.problem()["invalid_parameters"]] == parameters
    assert sent.messages == []


def test_a_number_the_validity_rule_refuses_is_invalid(clock: FakeClock) -> None:
    emulator = VerifyEmulator(clock=clock, number_is_valid=lambda to: to != NUMBER)

    with pytest.raises(InvalidParams):
        start(emulator)
    assert start(emulator, to=OTHER_NUMBER)


def test_a_second_start_for_a_live_number_conflicts_with_the_live_request_id(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    live_id = start(emulator)

    with pytest.raises(ConcurrentVerification) as conflict:
        start(emulator)

    assert conflict.value.status == 409
    assert conflict.value.problem()["request_id"] == live_id
    assert conflict.value.problem()["title"] == "Conflict"
    assert len(sent.messages) == 1
    assert start(emulator, to=OTHER_NUMBER) != live_id


def test_a_number_is_free_again_once_its_request_completes(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    first = start(emulator)
    emulator.check(first, sent.messages[0]["code"])

    assert start(emulator) != first


def test_channel_timeout_moves_the_request_to_voice_with_the_same_code(
    emulator: VerifyEmulator, sent: Recorder, clock: FakeClock
) -> None:
    request_id = start(emulator, channel_timeout=60)
    clock.advance(59)
    assert emulator.current_channel(request_id) == "sms"

    clock.advance(1)

    assert emulator.current_channel(request_id) == "voice"
    sms, voice = sent.messages
    assert voice["channel"] == "voice"
    assert voice["code"] == sms["code"]
    emulator.check(request_id, sms["code"])
    assert emulator.status(request_id) == COMPLETED


def test_after_the_last_step_times_out_the_request_is_expired_and_not_found(
    emulator: VerifyEmulator, sent: Recorder, clock: FakeClock
) -> None:
    request_id = start(emulator, channel_timeout=60)
    code = sent.messages[0]["code"]

    clock.advance(120)

    assert emulator.status(request_id) == EXPIRED
    with pytest.raises(NotFound) as missing:
        emulator.check(request_id, code)
    assert missing.value.status == 404
    [summary] = sent.callbacks
    assert summary["type"] == "summary"
    assert summary["status"] == "expired"
    assert [step["status"] for step in summary["workflow"]] == ["expired", "expired"]


def test_an_expired_request_frees_its_number(emulator: VerifyEmulator, clock: FakeClock) -> None:
    first = start(emulator, channel_timeout=60)
    clock.advance(120)

    assert start(emulator) != first


def test_a_correct_code_completes_and_a_later_check_is_not_found(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    request_id = start(emulator, client_ref="abc123")
    code = sent.messages[0]["code"]

    emulator.check(request_id, code)

    assert emulator.status(request_id) == COMPLETED
    with pytest.raises(NotFound):
        emulator.check(request_id, code)
    event, summary = sent.callbacks
    assert event | {"triggered_at": "", "finalized_at": ""} == {
        "request_id": request_id,
        "triggered_at": "",
        "type": "event",
        "channel": "sms",
        "status": "completed",
        "finalized_at": "",
        "client_ref": "abc123",
    }
    assert event["finalized_at"].endswith("Z")
    assert summary["status"] == "completed"
    assert summary["client_ref"] == "abc123"
    assert summary["channel_timeout"] == 60
    assert summary["workflow"][0]["status"] == "completed"
    assert summary["workflow"][1] == {"channel": "voice", "status": "unused"}


def test_the_first_two_wrong_codes_are_invalid_and_the_third_terminates(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    request_id = start(emulator)
    code = sent.messages[0]["code"]
    wrong = "0" * 6 if code != "0" * 6 else "1" * 6

    for _ in range(2):
        with pytest.raises(WrongCode) as invalid:
            emulator.check(request_id, wrong)
        assert invalid.value.status == 400
    with pytest.raises(TooManyWrongCodes) as terminated:
        emulator.check(request_id, wrong)

    assert terminated.value.status == 410
    assert emulator.status(request_id) == FAILED
    with pytest.raises(NotFound):
        emulator.check(request_id, code)
    assert [c["status"] for c in sent.callbacks] == ["failed", "failed"]


def test_the_number_of_wrong_codes_that_terminates_is_configurable(
    clock: FakeClock, sent: Recorder
) -> None:
    emulator = VerifyEmulator(clock=clock, max_wrong_codes=4, on_message=sent.messages.append)
    request_id = start(emulator)

    for _ in range(3):
        with pytest.raises(WrongCode):
            emulator.check(request_id, "wrong")
    with pytest.raises(TooManyWrongCodes):
        emulator.check(request_id, "wrong")


def test_next_workflow_calls_with_the_same_code_then_has_no_more_events(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    request_id = start(emulator)

    emulator.next_workflow(request_id)

    assert emulator.current_channel(request_id) == "voice"
    assert [m["channel"] for m in sent.messages] == ["sms", "voice"]
    assert sent.messages[1]["code"] == sent.messages[0]["code"]
    with pytest.raises(NoMoreEvents) as exhausted:
        emulator.next_workflow(request_id)
    assert exhausted.value.status == 409
    assert exhausted.value.problem()["detail"] == "There are no more events left to trigger."


def test_the_voice_step_gets_its_own_channel_timeout_after_next_workflow(
    emulator: VerifyEmulator, clock: FakeClock
) -> None:
    request_id = start(emulator, channel_timeout=60)
    clock.advance(50)
    emulator.next_workflow(request_id)

    clock.advance(59)
    assert emulator.status(request_id) == IN_PROGRESS
    clock.advance(1)
    assert emulator.status(request_id) == EXPIRED


def test_cancel_removes_the_request_and_frees_the_number(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    request_id = start(emulator)

    emulator.cancel(request_id)

    assert emulator.status(request_id) is None
    with pytest.raises(NotFound):
        emulator.check(request_id, sent.messages[0]["code"])
    with pytest.raises(NotFound):
        emulator.cancel(request_id)
    assert start(emulator) != request_id


def test_the_strict_cancel_window_refuses_cancelling_in_the_first_30_seconds(
    clock: FakeClock,
) -> None:
    emulator = VerifyEmulator(clock=clock, strict_cancel_window=True)
    request_id = start(emulator)

    with pytest.raises(NotFound):
        emulator.cancel(request_id)
    clock.advance(30)
    emulator.cancel(request_id)
    assert emulator.status(request_id) is None


def test_sweep_sends_the_voice_step_without_anyone_touching_the_request(
    emulator: VerifyEmulator, sent: Recorder, clock: FakeClock
) -> None:
    start(emulator, channel_timeout=60)
    clock.advance(61)
    assert len(sent.messages) == 1

    emulator.sweep()

    assert [m["channel"] for m in sent.messages] == ["sms", "voice"]
    assert emulator.live_request_for(NUMBER) == sent.messages[0]["request_id"]


def test_a_failing_listener_does_not_undo_the_start(clock: FakeClock) -> None:
    def explode(message: dict[str, Any]) -> None:
        raise RuntimeError("listener broke")

    emulator = VerifyEmulator(clock=clock, on_message=explode)

    request_id = start(emulator)

    assert emulator.status(request_id) == IN_PROGRESS


def test_a_workflow_steps_through_its_channels_in_order(
    emulator: VerifyEmulator, sent: Recorder
) -> None:
    workflow = [{"channel": "whatsapp", "from": "447700900001"}, {"channel": "sms"}]
    request_id = start(emulator, workflow=workflow)
    emulator.next_workflow(request_id)

    assert [m["channel"] for m in sent.messages] == ["whatsapp", "sms"]
    assert sent.messages[0]["from"] == "447700900001"
    with pytest.raises(NoMoreEvents):
        emulator.next_workflow(request_id)


@pytest.mark.parametrize("channel", ["whatsapp", "rcs"])
def test_a_channel_sent_from_an_account_sender_needs_its_from(
    emulator: VerifyEmulator, sent: Recorder, channel: str
) -> None:
    with pytest.raises(InvalidParams) as refused:
        start(emulator, workflow=[{"channel": channel}])

    assert refused.value.invalid_parameters == [
        {"name": "workflow[0].from", "reason": "is required for this channel"}
    ]
    assert sent.messages == []
