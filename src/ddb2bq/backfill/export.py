"""DynamoDB exports to S3 as a backfill source: start one and wait for it, or read one.

``ExportTableToPointInTime`` (DYNAMODB_JSON) needs point-in-time recovery on and uses no read
capacity. An export's data files are listed from its ``manifest-files.json`` (never by listing
the prefix: incremental exports share a data folder); an export without a manifest (moto writes
none) is read from the files under its own ``data/`` folder. Lines are ``{"Item": {...}}`` in
DynamoDB JSON, gzip-compressed. Research file, section C.
"""

from __future__ import annotations

import gzip
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import orjson

from ddb2bq.dynamodb.connect import error_code
from ddb2bq.exceptions import ConfigError, Ddb2bqError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExportLocation:
    """``s3://bucket/prefix/AWSDynamoDB/<export id>``: one export's folder."""

    bucket: str
    folder: str

    @property
    def export_id(self) -> str:
        """The export's id, the folder's last part."""
        return self.folder.rstrip("/").rsplit("/", 1)[-1]


def parse_s3(url: str, what: str) -> tuple[str, str]:
    """``(bucket, key prefix)`` of ``s3://bucket/prefix``.

    >>> parse_s3("s3://b/exports/orders", "--export")
    ('b', 'exports/orders')
    """
    parts = urlparse(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"{what} {url!r} is not an s3://BUCKET/PREFIX address.")
    return parts.netloc, parts.path.strip("/")


def start_export(
    dynamodb: Any,
    s3: Any,
    table: str,
    bucket: str,
    prefix: str,
    *,
    poll_s: float = 10.0,
    report: Callable[[str], None] = logger.info,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ExportLocation, int]:
    """Export ``table`` to ``s3://bucket/prefix`` and wait until it completes; returns where it
    is and its export time (epoch microseconds)."""
    arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
    before = _export_folders(s3, bucket, prefix)
    try:
        answer = dynamodb.export_table_to_point_in_time(
            TableArn=arn, S3Bucket=bucket, S3Prefix=prefix, ExportFormat="DYNAMODB_JSON"
        )
    except Exception as exc:
        raise _export_error(exc, table, bucket) from exc
    description = answer["ExportDescription"]
    started = time.monotonic()
    while description["ExportStatus"] == "IN_PROGRESS":
        report(f"Export of {table} to s3://{bucket}/{prefix}: in progress, "
               f"{time.monotonic() - started:.0f} s.")  # fmt: skip
        sleep(poll_s)
        description = dynamodb.describe_export(ExportArn=description["ExportArn"])[
            "ExportDescription"
        ]
    if description["ExportStatus"] != "COMPLETED":
        raise Ddb2bqError(
            f"The export of table {table!r} to s3://{bucket}/{prefix} ended "
            f"{description['ExportStatus']}: {description.get('FailureMessage', 'no reason given')}."
        )
    export_id = description["ExportArn"].rsplit("/", 1)[-1]
    folder = "/".join(p for p in (prefix, "AWSDynamoDB", export_id) if p)
    new = sorted(_export_folders(s3, bucket, prefix) - before)
    if folder not in new and len(new) == 1:
        logger.info("The export's folder %s is not named after its id %s (moto names it at "
                    "random); reading that folder.", new[0], export_id)  # fmt: skip
        folder = new[0]
    return ExportLocation(bucket, folder), _micros(description.get("ExportTime"))


def _export_folders(s3: Any, bucket: str, prefix: str) -> set[str]:
    """The ``PREFIX/AWSDynamoDB/ID`` folders in ``bucket`` now."""
    base = "/".join(p for p in (prefix, "AWSDynamoDB") if p) + "/"
    folders: set[str] = set()
    request = {"Bucket": bucket, "Prefix": base, "Delimiter": "/"}
    while True:
        page = s3.list_objects_v2(**request)
        folders |= {p["Prefix"].rstrip("/") for p in page.get("CommonPrefixes", [])}
        if not page.get("IsTruncated"):
            return folders - {base + "data"}  # incremental exports' shared folder
        request["ContinuationToken"] = page["NextContinuationToken"]


def check_export(dynamodb: Any, s3: Any, table: str, key_names: Sequence[str],
                 location: ExportLocation) -> int:  # fmt: skip
    """Refuse an export of another table; returns its export time (epoch microseconds).

    The export's ``manifest-summary.json`` names its table; without one (moto writes none), the
    table's own ListExports must know the export's id, or else its first item must carry the
    table's key attributes (a weaker check, said in the log).
    """
    arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
    summary = _json_object(s3, location, "manifest-summary.json")
    if summary is not None:
        if summary.get("tableArn") != arn:
            raise _not_this_table(location, table, f"it is of {summary.get('tableArn')}")
        return _micros(_parse_time(summary.get("exportTime")))
    for export in _exports(dynamodb, arn):
        if export["ExportArn"].rsplit("/", 1)[-1] == location.export_id:
            described = dynamodb.describe_export(ExportArn=export["ExportArn"])
            return _micros(described["ExportDescription"].get("ExportTime"))
    first = next((line for f in data_files(s3, location)[:1] for line in
                  read_lines(s3, location.bucket)(f) if line.strip()), None)  # fmt: skip
    item = orjson.loads(first)["Item"] if first else {}
    if not all(name in item for name in key_names):
        raise _not_this_table(location, table, f"its items lack the keys {list(key_names)}")
    logger.warning("s3://%s/%s has no manifest-summary.json: its items have the keys of %s, "
                   "but that it is this table's export cannot be proved.",
                   location.bucket, location.folder, table)  # fmt: skip
    return _micros(None)


def _not_this_table(location: ExportLocation, table: str, why: str) -> ConfigError:
    return ConfigError(
        f"s3://{location.bucket}/{location.folder} is not an export of table {table!r} ({why}): "
        "give an export of this table."
    )


def _json_object(s3: Any, location: ExportLocation, name: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=location.bucket, Key=f"{location.folder}/{name}")["Body"]
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise _s3_error(exc, location) from exc
    document: dict[str, Any] = orjson.loads(body.read())
    return document


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def data_files(s3: Any, location: ExportLocation) -> list[str]:
    """The export's data file keys: from ``manifest-files.json``, else its ``data/`` folder."""
    manifest = f"{location.folder}/manifest-files.json"
    try:
        body = s3.get_object(Bucket=location.bucket, Key=manifest)["Body"].read()
    except Exception as exc:
        if error_code(exc) not in ("NoSuchKey", "404"):
            raise _s3_error(exc, location) from exc
        return _listed(s3, location)
    return [orjson.loads(line)["dataFileS3Key"] for line in body.splitlines() if line.strip()]


def read_lines(s3: Any, bucket: str) -> Callable[[str], Iterator[bytes]]:
    """A reader of one data file's lines (gunzipped when the key ends in ``.gz``)."""

    def read(key: str) -> Iterator[bytes]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        stream: Any = gzip.GzipFile(fileobj=body) if key.endswith(".gz") else body
        yield from io.BufferedReader(stream)

    return read


def _listed(s3: Any, location: ExportLocation) -> list[str]:
    keys: list[str] = []
    request = {"Bucket": location.bucket, "Prefix": f"{location.folder}/data/"}
    try:
        while True:
            page = s3.list_objects_v2(**request)
            keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
            if not page.get("IsTruncated"):
                break
            request["ContinuationToken"] = page["NextContinuationToken"]
    except Exception as exc:
        raise _s3_error(exc, location) from exc
    if not keys:
        raise ConfigError(
            f"s3://{location.bucket}/{location.folder} holds no manifest-files.json and no "
            "data/ files: is it an export's folder (PREFIX/AWSDynamoDB/EXPORT_ID)?"
        )
    return sorted(keys)


def _exports(dynamodb: Any, table_arn: str) -> Iterator[dict[str, Any]]:
    request: dict[str, Any] = {"TableArn": table_arn}
    while True:
        page = dynamodb.list_exports(**request)
        yield from page.get("ExportSummaries", [])
        if not page.get("NextToken"):
            return
        request["NextToken"] = page["NextToken"]


def _export_error(exc: BaseException, table: str, bucket: str) -> Exception:
    code = error_code(exc)
    if code in ("PointInTimeRecoveryUnavailableException",):
        return ConfigError(
            f"Point-in-time recovery is off for table {table!r}, and exports need it: turn it "
            f"on (aws dynamodb update-continuous-backups --table-name {table} "
            "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true), or "
            "backfill by Scan (without --export)."
        )
    if code in ("NoSuchBucket", "InvalidExportTimeException", "ValidationException"):
        return ConfigError(f"The export of table {table!r} to bucket {bucket!r} failed: {exc}")
    return exc if isinstance(exc, Exception) else Ddb2bqError(str(exc))


def _s3_error(exc: BaseException, location: ExportLocation) -> Exception:
    if error_code(exc) == "NoSuchBucket":
        return ConfigError(f"The S3 bucket {location.bucket!r} does not exist: check the address.")
    return exc if isinstance(exc, Exception) else Ddb2bqError(str(exc))


def _micros(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000)
    return int(time.time() * 1_000_000)
