"""Errors of the replication's stored state (generation, checkpoints, lease).

Where they sit in ddb2bq's tree (``ddb2bq.exceptions``)::

    Ddb2bqError
    └── StateError               the state cannot be read or written as asked; retrying the same
        │                        call fails again (a missing table, no access, a bad path)
        ├── StateUnavailable     also a RetryableError: throttling, a 5xx, a locked file, a network
        │                        blip; the same call may succeed after a back-off
        └── LeaseLost            another runner holds the table's lease now: stop, never retry
"""

from __future__ import annotations

from ddb2bq.exceptions import Ddb2bqError, RetryableError


class StateError(Ddb2bqError):
    """The stored state cannot be read or written as asked; retrying the same call will not help.

    The message names the state file or DynamoDB table and says what to do.
    """


class StateUnavailable(StateError, RetryableError):  # noqa: N818 (the name other code uses)
    """The state store is briefly unavailable (throttled, a 5xx, a locked file, the network).

    Retrying after a back-off may help.
    """


class LeaseLost(StateError):  # noqa: N818 (the name other code uses)
    """This runner's lease on a table was taken over (or released): another runner owns it now.

    Retrying does not help: the runner must stop writing, since two runners must never write one
    table's checkpoints at once.
    """
