"""ddb2bq: replicate Amazon DynamoDB tables into Google BigQuery, continuously and without loss."""

from __future__ import annotations

__version__ = "0.1.0"
