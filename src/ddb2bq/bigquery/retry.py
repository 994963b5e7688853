"""Retrying a request: bounded exponential backoff with full jitter.

:class:`RetryPolicy` retries what :func:`ddb2bq.bigquery.errors.classify` calls retryable, with
bounded exponential backoff and full jitter (each wait is uniform in ``[0, min(maximum, initial *
multiplier ** attempt)]``), within ``max_attempts`` and an overall ``deadline``. The writers pass
``retry=None`` to the Google clients, whose own retries run for up to 600 s (REST) or a day
(Storage Write), so that these bounds are the only ones.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ddb2bq.bigquery.errors import classify

T = TypeVar("T")


@dataclass(frozen=True)
class Attempted(Generic[T]):
    """What :meth:`RetryPolicy.call` did: the value, or the last error and whether it is
    retryable; ``attempts`` counts the requests sent."""

    value: T | None
    error: BaseException | None
    retryable: bool
    attempts: int

    @property
    def retries(self) -> int:
        """Requests sent after the first."""
        return max(self.attempts - 1, 0)


@dataclass(frozen=True)
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
        self, request: Callable[[], T], is_retryable: Callable[[BaseException], bool] = classify
    ) -> Attempted[T]:
        """Send ``request`` until it returns, fails terminally, or the bounds are reached.

        Never raises for an ``Exception``: the last error is returned with its class.
        """
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
                if self.clock() + wait - started > self.deadline:
                    return Attempted(None, exc, retryable, attempt)
                self.sleep(wait)


NO_RETRY = RetryPolicy(max_attempts=1)
"""Send once; a retryable error is reported as retryable to the caller."""
