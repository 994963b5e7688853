"""How often the runner calls DynamoDB Streams: back-off on throttling, and a bounded poll rate
on idle shards.

GetRecords is billed per call, and an empty page is not the end of an open shard: an idle shard
is polled at most :attr:`Pacing.idle_rate_max` times a second at first, slowing (doubling the
wait) to once every :attr:`Pacing.idle_wait_max` seconds. Throttling
(``LimitExceededException``, ``ProvisionedThroughputExceededException``) and server errors back
off exponentially with full jitter (each wait uniform in ``[0, min(cap, base * 2 ** n)]``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pacing:
    """The runner's timing settings, in seconds."""

    idle_wait_min: float = 0.25
    """The first wait after an empty page of an open shard: at most 4 calls a second."""
    idle_wait_max: float = 1.0
    """The longest wait between polls of an idle shard."""
    throttle_base: float = 0.5
    throttle_cap: float = 20.0
    retry_base: float = 1.0
    """First wait before a batch BigQuery did not take is sent again."""
    retry_cap: float = 60.0

    @property
    def idle_rate_max(self) -> float:
        """The most GetRecords calls an idle shard gets per second."""
        return 1 / self.idle_wait_min

    def idle_wait(self, empty_pages: int) -> float:
        """The wait after ``empty_pages`` empty pages in a row (1 or more).

        >>> [Pacing().idle_wait(n) for n in (1, 2, 3, 4, 5)]
        [0.25, 0.5, 1.0, 1.0, 1.0]
        """
        return float(min(self.idle_wait_max, self.idle_wait_min * 2 ** max(0, empty_pages - 1)))

    def throttled_wait(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before the next call after ``attempt`` (1 or more) throttled calls in a row.

        >>> 0 <= Pacing().throttled_wait(3) <= 2.0
        True
        """
        return _jitter(self.throttle_base, self.throttle_cap, attempt, rng)

    def retry_wait(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before a batch that must be retried is sent again (``attempt`` 1 or more)."""
        return _jitter(self.retry_base, self.retry_cap, attempt, rng)


def _jitter(base: float, cap: float, attempt: int, rng: random.Random | None) -> float:
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)
