"""Retrying a request: bounded exponential backoff with full jitter, within the time limits.

:class:`RetryPolicy` retries what :func:`ddb2bq.bigquery.errors.classify` calls retryable, with
bounded exponential backoff and full jitter (each wait is uniform in ``[0, min(maximum, initial *
multiplier ** attempt)]``), within ``max_attempts`` and an overall ``deadline`` (seconds from the
first request), and within the two limits of :mod:`ddb2bq.contract`: a retry never makes a call
take longer than the command line's :func:`~ddb2bq.contract.retry_limit`, and never sleeps past
the :func:`~ddb2bq.contract.current_deadline` (a Lambda invocation's): once that has passed no
request is sent at all. Each retry is logged (a WARNING naming what failed, why, and the wait).

The writers pass ``retry=None`` to the Google clients, whose own retries run for up to 600 s
(REST) or a day (Storage Write), so that these bounds are the only ones; :func:`google_retry` is
the same bounds for the calls that go through the full client's own retry.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import field
from typing import Any, Generic, TypeVar

from ddb2bq.bigquery.errors import brief, classify
from ddb2bq.classes import data_class
from ddb2bq.contract import Deadline, current_deadline, deadline_scope, retry_limit

T = TypeVar("T")
logger = logging.getLogger(__name__)


@data_class(frozen=True)
class Attempted(Generic[T]):
    """What :meth:`RetryPolicy.call` did: the value, or the last error and whether it is
    retryable; ``attempts`` counts the requests sent (0 when the deadline had passed)."""

    value: T | None
    error: BaseException | None
    retryable: bool
    attempts: int

    @property
    def retries(self) -> int:
        """Requests sent after the first."""
        return max(self.attempts - 1, 0)


@data_class(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter.

    ``sleep``, ``random`` and ``clock`` are injectable so tests run instantly and deterministically.

    >>> waits = []
    >>> policy = RetryPolicy(max_attempts=3, sleep=waits.append, random=lambda: 1.0)
    >>> outcome = policy.call(lambda: (_ for _ in ()).throw(TimeoutError("slow")))
    >>> outcome.attempts, outcome.retryable, waits
    (3, True, [0.2, 0.4])
    """

    max_attempts: int = 5
    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0
    deadline: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be 1 or more.")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first retry): full jitter."""
        ceiling = min(self.maximum, self.initial * self.multiplier**retry)
        return float(self.random() * ceiling)

    def call(
        self,
        request: Callable[[], T],
        is_retryable: Callable[[BaseException], bool] = classify,
        *,
        what: str = "a BigQuery request",
    ) -> Attempted[T]:
        """Send ``request`` until it returns, fails terminally, or the bounds are reached;
        ``what`` names the request in the retry log lines.

        Never raises for an ``Exception``: the last error is returned with its class. When the
        current deadline has already passed, nothing is sent: the error is
        :class:`~ddb2bq.contract.OutOfTime` (retryable) and ``attempts`` is 0. Under a retry
        limit, the limit is also a deadline for the call: no request waits past it either.
        """
        limit = retry_limit()
        bound = None
        if limit is not None:
            bound = Deadline.after(limit, f"the {limit:g} s retry deadline (--retry-deadline)")
        with deadline_scope(bound) as deadline:
            return self._send(
                request, is_retryable, what, deadline, min(self.deadline, limit or math.inf)
            )

    def _send(
        self,
        request: Callable[[], T],
        is_retryable: Callable[[BaseException], bool],
        what: str,
        deadline: Deadline | None,
        limit: float,
    ) -> Attempted[T]:
        if deadline is not None and deadline.expired:
            return Attempted(None, deadline.out_of_time(f"Sending {what}"), True, 0)
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return Attempted(request(), None, False, attempt)
            except Exception as exc:  # noqa: BLE001 - every error is classified and returned
                retryable = is_retryable(exc)
                if not retryable or attempt >= self.max_attempts:
                    return Attempted(None, exc, retryable, attempt)
                wait = self.backoff(attempt - 1)
                if self.clock() + wait - started > limit:
                    _give_up(what, exc, attempt, f"the {limit:g} s retry deadline")
                    return Attempted(None, exc, retryable, attempt)
                if deadline is not None and wait >= deadline.remaining():
                    _give_up(what, exc, attempt, deadline.why)
                    return Attempted(None, exc, retryable, attempt)
                logger.warning(
                    "%s failed (%s); retrying in %.1f s (attempt %d of %d, for %g s at most).",
                    _capital(what),
                    brief(exc),
                    wait,
                    attempt + 1,
                    self.max_attempts,
                    limit,
                )
                self.sleep(wait)


NO_RETRY = RetryPolicy(max_attempts=1)
"""Send once; a retryable error is reported as retryable to the caller."""


def google_retry(deadline: float) -> Any:
    """A google-api-core ``Retry`` for the full BigQuery client's calls: what :func:`classify`
    calls retryable, for at most ``deadline`` seconds, the :func:`~ddb2bq.contract.retry_limit`
    and what is left of the :func:`~ddb2bq.contract.current_deadline`; each retry logged.

    >>> client.get_table("p.d.t", retry=google_retry(120.0))  # doctest: +SKIP
    """
    from google.api_core.retry import Retry  # noqa: PLC0415 (heavy: only the full client's calls)

    bounds = [deadline, retry_limit() or math.inf]
    current = current_deadline()
    if current is not None:
        bounds.append(current.remaining())
    timeout = max(min(bounds), 0.001)

    def on_error(exc: Exception) -> None:
        logger.warning(
            "A BigQuery call failed (%s); retrying for %g s at most.", brief(exc), timeout
        )

    return Retry(predicate=classify, timeout=timeout, on_error=on_error)


def _give_up(what: str, exc: BaseException, attempts: int, bound: str) -> None:
    logger.warning(
        "%s failed (%s); not retried again: %d attempt%s, and the next wait would pass %s.",
        _capital(what),
        brief(exc),
        attempts,
        "" if attempts == 1 else "s",
        bound,
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
