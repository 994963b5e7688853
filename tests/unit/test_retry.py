"""The retry policy's bounds and jitter, the time limits it keeps, its log lines, and the one
classification of errors."""

from __future__ import annotations

import logging

import grpc
import pytest
import requests
from google.api_core import exceptions as api

from ddb2bq.bigquery.errors import classify
from ddb2bq.bigquery.retry import RetryPolicy, google_retry
from ddb2bq.contract import Deadline, OutOfTime, deadline_scope, limit_retries
from ddb2bq.exceptions import RetryableError, TerminalError


class FakeClock:
    """A clock that only moves when the policy sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def policy(clock: FakeClock, *, jitter: float = 1.0, **bounds: float) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, clock=clock, random=lambda: jitter, **bounds)  # type: ignore[arg-type]


class Flaky:
    """Raises each error of ``errors`` in turn, then returns ``value``."""

    def __init__(self, *errors: BaseException, value: str = "done") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.value = value

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


FakeRpcError.__module__ = "grpc._channel"  # raw gRPC errors come from grpc's own modules


@pytest.mark.parametrize(
    "error",
    [
        api.TooManyRequests("429 quota"),
        api.ServiceUnavailable("503"),
        api.InternalServerError("500"),
        api.BadGateway("502"),
        api.GatewayTimeout("504"),
        api.DeadlineExceeded("deadline"),
        api.ResourceExhausted("quota"),
        api.Forbidden("403", errors=[{"reason": "rateLimitExceeded"}]),
        api.BadRequest("400", errors=[{"reason": "backendError"}]),
        requests.ConnectionError("Connection reset by peer"),
        requests.ReadTimeout("read timed out"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        RetryableError("try later"),
        FakeRpcError(grpc.StatusCode.UNAVAILABLE),
        FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED),
        FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED),
        FakeRpcError(grpc.StatusCode.INTERNAL),
    ],
    ids=repr,
)
def test_transient_errors_are_retryable(error: BaseException) -> None:
    assert classify(error) is True


@pytest.mark.parametrize(
    "error",
    [
        api.NotFound("404 Not found: Table p:d.t", errors=[{"reason": "notFound"}]),
        api.BadRequest("400", errors=[{"reason": "invalid"}]),
        api.Forbidden("403", errors=[{"reason": "accessDenied"}]),
        api.InvalidArgument("Rows are invalid"),
        TerminalError("bad row"),
        ValueError("a bug"),
        FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT),
        FakeRpcError(grpc.StatusCode.NOT_FOUND),
    ],
    ids=repr,
)
def test_lasting_errors_are_terminal(error: BaseException) -> None:
    assert classify(error) is False


def test_an_error_raised_from_a_retryable_one_is_retryable() -> None:
    # GIVEN a library error raised from a reset connection
    outer = RuntimeError("transport failed")
    outer.__cause__ = ConnectionResetError(104, "reset")
    # THEN its cause decides
    assert classify(outer) is True


def test_retries_until_success_with_growing_waits() -> None:
    # GIVEN a request failing twice with 503 and a policy with no jitter
    clock = FakeClock()
    request = Flaky(api.ServiceUnavailable("503"), api.ServiceUnavailable("503"))
    # WHEN it is called
    outcome = policy(clock, initial=0.5, multiplier=3.0).call(request)
    # THEN the third try succeeds after waits of initial and initial * multiplier
    assert (outcome.value, outcome.error, outcome.attempts, outcome.retries) == ("done", None, 3, 2)
    assert clock.sleeps == [0.5, 1.5]


def test_full_jitter_draws_each_wait_below_its_ceiling() -> None:
    clock = FakeClock()
    request = Flaky(*[TimeoutError()] * 4)
    policy(clock, jitter=0.25, initial=1.0, maximum=4.0, multiplier=2.0).call(request)
    assert clock.sleeps == [0.25, 0.5, 1.0, 1.0]  # 0.25 x ceilings 1, 2, 4, 4 (capped)


def test_gives_up_after_max_attempts_and_reports_retryable() -> None:
    clock = FakeClock()
    request = Flaky(*[api.TooManyRequests("429")] * 10)
    outcome = policy(clock, max_attempts=4).call(request)
    assert request.calls == 4
    assert outcome.retryable is True
    assert isinstance(outcome.error, api.TooManyRequests)
    assert len(clock.sleeps) == 3


def test_gives_up_when_the_next_wait_would_pass_the_deadline() -> None:
    clock = FakeClock()
    request = Flaky(*[TimeoutError()] * 10)
    outcome = policy(clock, initial=1.0, multiplier=2.0, maximum=100.0, deadline=5.0).call(request)
    assert clock.sleeps == [1.0, 2.0]  # the next wait (4.0) would end at 7.0 > 5.0
    assert (outcome.attempts, outcome.retryable) == (3, True)


def test_terminal_error_is_not_retried() -> None:
    clock = FakeClock()
    request = Flaky(api.NotFound("table dropped"))
    outcome = policy(clock).call(request)
    assert (request.calls, outcome.retryable, clock.sleeps) == (1, False, [])


def test_max_attempts_must_allow_one_request() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# --- the time limits: the command line's retry deadline, the Lambda invocation's deadline -------


def test_the_command_lines_retry_limit_cuts_a_longer_policy_deadline() -> None:
    # GIVEN a policy allowing 60 s of retries, run under the command line's 2.5 s limit
    clock = FakeClock()
    request = Flaky(*[ConnectionRefusedError(111, "Connection refused")] * 10)
    with limit_retries(2.5):
        outcome = policy(clock, initial=1.0, multiplier=2.0, maximum=100.0, deadline=60.0).call(
            request
        )
    # THEN it waits 1 s, then gives up: the next wait (2 s) would end at 3 s, past the limit
    assert clock.sleeps == [1.0]
    assert (outcome.attempts, outcome.retryable) == (2, True)


def test_a_retry_never_sleeps_past_the_current_deadline() -> None:
    # GIVEN a deadline 2.5 s away on the same clock, and a request that keeps timing out
    clock = FakeClock()
    request = Flaky(*[TimeoutError("no answer")] * 10)
    with deadline_scope(Deadline.after(2.5, "the invocation's deadline", clock=clock)):
        outcome = policy(clock, initial=1.0, multiplier=2.0, maximum=100.0).call(request)
    # THEN it waits 1 s, and not the 2 s that would pass the deadline
    assert clock.sleeps == [1.0]
    assert (outcome.attempts, outcome.retryable) == (2, True)
    assert isinstance(outcome.error, TimeoutError)


def test_nothing_is_sent_once_the_deadline_has_passed() -> None:
    clock = FakeClock()
    clock.now = 10.0
    request = Flaky()
    with deadline_scope(Deadline(at=9.0, why="the invocation's deadline", clock=clock)):
        outcome = policy(clock).call(request, what="a request of 3 rows to p.d.t")
    assert (request.calls, outcome.attempts, outcome.retryable) == (0, 0, True)
    assert isinstance(outcome.error, OutOfTime)
    assert str(outcome.error) == (
        "Sending a request of 3 rows to p.d.t was not done: the invocation's deadline passed; "
        "it will be tried again."
    )


def test_each_retry_says_what_failed_and_how_long_it_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a request refused twice with 503, then answered
    clock = FakeClock()
    request = Flaky(api.ServiceUnavailable("503 backend"), api.ServiceUnavailable("503 backend"))
    caplog.set_level(logging.WARNING, logger="ddb2bq.bigquery.retry")
    # WHEN it is sent
    policy(clock, initial=0.5).call(request, what="a request of 2 rows to p.d.orders_changes")
    # THEN one line per retry names it, the error, the wait and the attempt
    assert [r.getMessage() for r in caplog.records] == [
        "A request of 2 rows to p.d.orders_changes failed (ServiceUnavailable: 503 503 backend); "
        "retrying in 0.5 s (attempt 2 of 5, for 60 s at most).",
        "A request of 2 rows to p.d.orders_changes failed (ServiceUnavailable: 503 503 backend); "
        "retrying in 1.0 s (attempt 3 of 5, for 60 s at most).",
    ]


def test_the_full_clients_retry_keeps_the_same_limits() -> None:
    # GIVEN the command line's 5 s limit, then also a deadline 2 s away
    with limit_retries(5.0):
        assert google_retry(120.0).timeout == 5.0
        with deadline_scope(Deadline.after(2.0)):
            assert google_retry(120.0).timeout <= 2.0
    # AND without either, the call's own bound
    retry = google_retry(120.0)
    assert retry.timeout == 120.0
    assert retry._predicate(api.ServiceUnavailable("503")) is True
    assert retry._predicate(api.NotFound("404")) is False
