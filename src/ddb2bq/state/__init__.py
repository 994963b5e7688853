"""The replication's stored state, per replicated table: its generation, its stream shards'
checkpoints, and the lease that lets one runner at a time replicate it.

Two stores implement :class:`StateStore`: :class:`SqliteStateStore`, one local file and the
default (``.ddb2bq/state.sqlite``), and :class:`DynamoDBStateStore`, one DynamoDB table for runners
in containers. :func:`state_store_from_setting` picks one from a setting (a path, or
``dynamodb://TABLE``). Both keep checkpoints monotonic (:func:`merge_checkpoints`) and refuse a
checkpoint saved under a lease that is no longer current (:class:`LeaseLost`), which is what makes
"two runners never write at once" true. boto3 is imported only when a DynamoDB store is used.

>>> from ddb2bq.state import Generation
>>> Generation(configured=1, store=None, table="orders").current()
1
"""

from __future__ import annotations

from ddb2bq.state.dynamodb import DynamoDBStateStore, create_table
from ddb2bq.state.errors import LeaseLost, StateError, StateUnavailable
from ddb2bq.state.factory import DYNAMODB_SCHEME, state_store_from_setting
from ddb2bq.state.generation import Generation
from ddb2bq.state.model import (
    MAX_GENERATION,
    Checkpoint,
    Lease,
    SegmentProgress,
    StateStore,
    merge_checkpoints,
)
from ddb2bq.state.sqlite import DEFAULT_PATH, SqliteStateStore

__all__ = [
    "DEFAULT_PATH",
    "DYNAMODB_SCHEME",
    "MAX_GENERATION",
    "Checkpoint",
    "DynamoDBStateStore",
    "Generation",
    "Lease",
    "LeaseLost",
    "SegmentProgress",
    "SqliteStateStore",
    "StateError",
    "StateStore",
    "StateUnavailable",
    "create_table",
    "merge_checkpoints",
    "state_store_from_setting",
]
