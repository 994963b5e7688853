"""Retrying a request: which errors are worth another try, and how long to wait between tries.

:func:`classify` is the one place that decides whether an error from the BigQuery REST clients
(``google.api_core`` exceptions and ``requests``; the light client's
:class:`~ddb2bq.sinks.rest.BigQueryHTTPError`), the Storage Write API (gRPC) or the network is
retryable:

=====================================================  =========
error                                                  retryable
=====================================================  =========
HTTP 429, 500, 502, 503, 504                           yes
reason ``rateLimitExceeded``, ``backendError``,        yes
``internalError``, ``badGateway`` (any status)
gRPC UNAVAILABLE, RESOURCE_EXHAUSTED,                  yes
DEADLINE_EXCEEDED, INTERNAL
timeouts, connection refused or reset, cut streams     yes
:class:`~ddb2bq.exceptions.RetryableError`             yes
anything else: 400 invalid, 404 notFound (table        no
dropped), 403 accessDenied, INVALID_ARGUMENT,
NOT_FOUND, :class:`~ddb2bq.exceptions.TerminalError`
=====================================================  =========

:class:`RetryPolicy` retries with bounded exponential backoff and full jitter (each wait is
uniform in ``[0, min(maximum, initial * multiplier ** attempt)]``), within ``max_attempts`` and
an overall ``deadline``. The writers pass ``retry=None`` to the Google clients, whose own retries
run for up to 600 s (REST) or a day (Storage Write), so that these bounds are the only ones.

Classifying imports nothing: an error of ``google.api_core``, ``requests`` or ``grpc`` can only
exist once its library was imported, so those classes are looked up in ``sys.modules``, and the
Lambda's light ``insertAll`` path never pays for the Google client libraries.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ddb2bq.exceptions import RetryableError, TerminalError
from ddb2bq.sinks.rest import BigQueryHTTPError

T = TypeVar("T")

RETRYABLE_REASONS = frozenset(("rateLimitExceeded", "backendError", "internalError", "badGateway"))
"""BigQuery error reasons that a later identical request may not meet (as BigQuery's own client)."""

RETRYABLE_GRPC_CODES = frozenset(
    ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL")
)
"""gRPC status code names worth another try."""

RETRYABLE_STATUS = frozenset((429, 500, 502, 503, 504))
"""HTTP statuses worth another try (the full client's exception classes for them, below)."""

_RETRYABLE_API = (
    "TooManyRequests",
    "InternalServerError",
    "BadGateway",
    "ServiceUnavailable",
    "GatewayTimeout",
    "DeadlineExceeded",
    "ResourceExhausted",
)
_RETRYABLE_REQUESTS = ("ConnectionError", "Timeout", "ChunkedEncodingError")


def classify(exc: BaseException) -> bool:
    """True when the request that raised ``exc`` may succeed if sent again later.

    >>> classify(BigQueryHTTPError(503, "try later")), classify(BigQueryHTTPError(404, "gone"))
    (True, False)
    """
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, TerminalError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, *_classes("requests.exceptions"))):
        return True
    if isinstance(exc, BigQueryHTTPError):
        return exc.code in RETRYABLE_STATUS or bool(RETRYABLE_REASONS & set(exc.reasons))
    api = sys.modules.get("google.api_core.exceptions")
    if api is not None:
        if isinstance(exc, _classes("google.api_core.exceptions")):
            return True
        if isinstance(exc, api.GoogleAPICallError):
            return bool(RETRYABLE_REASONS & set(_reasons(exc)))
    code = _grpc_code_name(exc)
    if code is not None:
        return code in RETRYABLE_GRPC_CODES
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and classify(cause)


def splittable(exc: BaseException) -> bool:
    """True when a terminal request error may come from one row of it (HTTP 400, gRPC
    INVALID_ARGUMENT): sending the halves separately isolates the row.

    >>> splittable(BigQueryHTTPError(400, "Could not decode string as base64"))
    True
    >>> splittable(BigQueryHTTPError(404, "Not found: Table p:d.t"))
    False
    """
    if isinstance(exc, BigQueryHTTPError):
        return exc.code == 400 and not classify(exc)
    api = sys.modules.get("google.api_core.exceptions")
    return api is not None and isinstance(exc, api.BadRequest) and not classify(exc)


def _classes(module: str) -> tuple[type[BaseException], ...]:
    """The retryable exception classes of ``module`` when it is imported, else none."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return ()
    names = _RETRYABLE_API if module.startswith("google") else _RETRYABLE_REQUESTS
    return tuple(getattr(loaded, name) for name in names)


def _reasons(exc: Any) -> list[str]:
    return [str(e.get("reason", "")) for e in exc.errors if isinstance(e, dict)]


def _grpc_code_name(exc: BaseException) -> str | None:
    """The status code name of a raw ``grpc.RpcError`` (one the API core did not wrap)."""
    code = getattr(exc, "code", None)
    if not callable(code) or not type(exc).__module__.startswith("grpc"):
        return None
    value = code()
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else None


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
