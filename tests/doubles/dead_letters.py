"""A fake dead-letter sink: the :class:`~ddb2bq.contract.DeadLetterSink` contract, in a list."""

from __future__ import annotations

from collections.abc import Sequence

from ddb2bq.contract import DeadLetter
from ddb2bq.exceptions import RetryableError


class ListDeadLetters:
    """Keeps the letters it is sent; ``unreachable`` makes every send raise RetryableError."""

    def __init__(self, *, unreachable: bool = False) -> None:
        self.letters: list[DeadLetter] = []
        self.unreachable = unreachable
        self.sends = 0

    def send(self, letters: Sequence[DeadLetter]) -> None:
        self.sends += 1
        if self.unreachable:
            raise RetryableError("The dead letters are unreachable (a fake's outage).")
        self.letters.extend(letters)

    def event_ids(self) -> list[str]:
        """The event ids of the letters kept, in the order they came."""
        return [letter.event_id for letter in self.letters]
