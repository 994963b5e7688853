"""The contracts the pipeline writes through: writers, dead letters, and the time they may take.

A :class:`Writer` never raises for a row-level problem: it returns a :class:`WriteResult` whose
``failures`` name each change that was not written, classed as retryable (the same request may
succeed later: quota, 5xx, timeout) or terminal (the row itself is wrong: it goes to the dead
letters). A failure of the whole request marks every change of the batch. A
:class:`DeadLetterSink` stores :class:`DeadLetter` values durably or raises
:class:`~ddb2bq.exceptions.RetryableError`. Implementations: :mod:`ddb2bq.bigquery` (writers)
and :mod:`ddb2bq.dead_letters` (local, S3, SQS).

Time limits, two of them, both held for the code that runs inside a ``with`` block (a context
variable: writers need no extra parameter, and nested limits keep the tighter one):

- a :class:`Deadline` (:func:`deadline_scope`): the moment by which the work must stop. The
  Lambda handler sets one from the invocation's remaining time; :class:`~ddb2bq.pipeline.Pipeline`
  acts on nothing once it has passed, the writers' retries never sleep past it and no request
  waits beyond it, and what was not done is *retryable* (:class:`OutOfTime`), never lost;
- a retry limit (:func:`limit_retries`): the seconds any one call may spend retrying. The
  command line sets it (``--retry-deadline``, 30 s by default) so that an endpoint that does not
  answer is reported within seconds, not after minutes of silent retries.

>>> with limit_retries(5.0):
...     retry_limit()
5.0
>>> retry_limit() is None
True
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import field
from typing import Protocol

from ddb2bq.classes import data_class
from ddb2bq.exceptions import RetryableError
from ddb2bq.rows import Rows


@data_class(frozen=True, slots=True)
class Failure:
    """One change that was not written.

    ``index`` is its position in the batch given to :meth:`Writer.write`; ``reason`` a full
    sentence naming the table, key and column where known.
    """

    index: int
    reason: str
    retryable: bool
    column: str | None = None


@data_class(frozen=True, slots=True)
class WriteResult:
    """What a batch write did: how many rows landed and which changes failed."""

    written: int
    failures: tuple[Failure, ...] = ()
    retries: int = 0
    requests: int = 0
    bytes_sent: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every change of the batch was written."""
        return not self.failures


class Writer(Protocol):
    """Writes changelog rows (or mirror rows, for ``cdc``) of a batch of changes."""

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Write ``batch``; return the failures, never raise for a row-level error.

        Called inside the pipeline's :func:`deadline_scope`: once :func:`current_deadline`
        has passed, a writer sends nothing more and reports the rest retryable (the retry
        policy of :mod:`ddb2bq.bigquery.retry` does so for the BigQuery writers).
        """
        ...


@data_class(frozen=True, slots=True)
class DeadLetter:
    """A change that cannot be written, kept whole: the original record, the error, the time.

    ``record`` is the change's original input record (``Change.record``), JSON-serialisable
    after :func:`ddb2bq.dead_letters.to_json` turns ``bytes``/``datetime`` into text.
    ``seq`` is the change's ordering token when it was parsed: a replay keeps it, so a letter
    replayed after the generation rose still orders as the old-generation change it is.
    """

    table: str
    error: str
    failed_at_us: int
    source: str
    record: object
    event_id: str = ""
    keys: object = None
    seq: str = ""


class DeadLetterSink(Protocol):
    """Where terminal failures go: a local directory, S3 or SQS."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` durably; raise RetryableError when that cannot be done now."""
        ...


# --- time limits -------------------------------------------------------------------------------


class OutOfTime(RetryableError):  # noqa: N818 (named for what happened, as RetryableError)
    """The deadline came before the work was done: nothing is lost, the caller tries again."""


@data_class(frozen=True, slots=True)
class Deadline:
    """The moment by which work must stop: ``at`` on ``clock`` (monotonic seconds).

    ``why`` names it in messages (``"the Lambda invocation's deadline"``).

    >>> deadline = Deadline.after(30.0, "the test's deadline")
    >>> 29.0 < deadline.remaining() <= 30.0, deadline.expired
    (True, False)
    """

    at: float
    why: str = "the deadline"
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def after(
        cls, seconds: float, why: str = "the deadline", clock: Callable[[], float] = time.monotonic
    ) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(clock() + seconds, why, clock)

    def remaining(self) -> float:
        """Seconds left, 0 once it has passed."""
        return max(0.0, self.at - self.clock())

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.remaining() <= 0.0

    def out_of_time(self, what: str) -> OutOfTime:
        """The error for ``what`` (``"writing 3 changes"``) left undone at the deadline."""
        return OutOfTime(f"{what} was not done: {self.why} passed; it will be tried again.")


_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "ddb2bq_deadline", default=None
)
_RETRY_LIMIT: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "ddb2bq_retry_limit", default=None
)


def current_deadline() -> Deadline | None:
    """The deadline of the enclosing :func:`deadline_scope`, or None when there is none."""
    return _DEADLINE.get()


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Inside the block, :func:`current_deadline` is ``deadline``, or the enclosing deadline
    when that one comes first (None changes nothing); yields the deadline in force."""
    enclosing = _DEADLINE.get()
    if deadline is None or (
        enclosing is not None and enclosing.remaining() <= deadline.remaining()
    ):
        yield enclosing
        return
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def request_timeout(timeout: float) -> float:
    """``timeout`` cut to what is left of the current deadline, so that no request waits past it
    (never below 50 ms: a zero timeout would make a socket non-blocking).

    >>> with deadline_scope(Deadline.after(2.0)):
    ...     request_timeout(30.0) <= 2.0
    True
    """
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    return max(min(timeout, deadline.remaining()), _SHORTEST_TIMEOUT)


_SHORTEST_TIMEOUT = 0.05


def retry_limit() -> float | None:
    """Seconds any one call may spend retrying (:func:`limit_retries`); None: no limit beyond
    each retry policy's own."""
    return _RETRY_LIMIT.get()


@contextmanager
def limit_retries(seconds: float | None) -> Iterator[None]:
    """Inside the block, no call spends more than ``seconds`` retrying (the tighter limit wins
    when blocks nest; None changes nothing)."""
    limits = [limit for limit in (seconds, _RETRY_LIMIT.get()) if limit is not None]
    token = _RETRY_LIMIT.set(min(limits) if limits else None)
    try:
        yield
    finally:
        _RETRY_LIMIT.reset(token)
