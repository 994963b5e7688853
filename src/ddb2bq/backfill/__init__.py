"""The backfill (``ddb2bq backfill``): every item the table holds into the changelog, as
SNAPSHOT changes that any stream change of the same generation outranks.

- :mod:`ddb2bq.dynamodb.scan`: parallel Scan segments, resumable, paced to a capacity budget;
- :mod:`~ddb2bq.backfill.export`: DynamoDB exports to S3 (start one, or read one), by manifest;
- :mod:`~ddb2bq.backfill.converting`: rows built in worker processes;
- :mod:`~ddb2bq.backfill.loading`: spool files and NDJSON load jobs;
- :mod:`~ddb2bq.backfill.run`: the machinery, its progress and its resumption.
"""
