"""Verify: proof that the BigQuery mirror holds exactly the DynamoDB table (``ddb2bq verify``).

=====================  ============================================================================
``verifier``           the run: both sides read at once, compared, differences re-checked
``canonical``          the typed canonical encoding of an item, and its hashes
``table``              the DynamoDB side: parallel Scan, BatchGetItem
``mirror``             the BigQuery side: the mirror's items, exactly, as DynamoDB JSON
``buckets``            flat-memory comparison through bucket files on disk
``recheck``            differences read again after the replication lag
``report``             what was found, as text
=====================  ============================================================================

>>> from ddb2bq.verify import verify
>>> verify(config, dynamodb=dynamodb, client=client).equal_everywhere  # doctest: +SKIP
True
"""

from __future__ import annotations

from ddb2bq.verify.buckets import Difference
from ddb2bq.verify.canonical import item_digest
from ddb2bq.verify.report import VerifyReport
from ddb2bq.verify.verifier import VerifyOptions, recheck_wait, verify

__all__ = ["Difference", "VerifyOptions", "VerifyReport", "item_digest", "recheck_wait", "verify"]
