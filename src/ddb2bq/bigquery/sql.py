r"""SQL for BigQuery, built safely: quoted identifiers, table references, parameterised queries.

Every name that reaches SQL is quoted with backticks, whatever it is: attribute names are user
data, and a column named ``select`` or ``x`; DROP TABLE y; --`` must stay a name. Inside a
quoted identifier BigQuery reads backslash escapes, so ``\`` and the backtick are escaped; nothing
is rejected. Values never reach SQL text: they travel as query parameters (``@name``).

>>> quote("select")
'`select`'
>>> quote("x`; DROP TABLE y; --")
'`x\\`; DROP TABLE y; --`'
>>> TableRef("my-project", "dynamodb", "orders").sql
'`my-project`.`dynamodb`.`orders`'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery.errors import classify
from ddb2bq.bigquery.retry import google_retry
from ddb2bq.classes import data_class
from ddb2bq.contract import retry_limit
from ddb2bq.exceptions import RetryableError, TerminalError

if TYPE_CHECKING:
    from google.cloud import bigquery

DEFAULT_DEADLINE = 120.0
"""Seconds a query (with its retries) may take; the client's own default retries for 600 s."""

_PARAM_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "BOOL"),  # before int: bool is an int
    (int, "INT64"),
    (Decimal, "BIGNUMERIC"),
    (str, "STRING"),
    (bytes, "BYTES"),
    (datetime, "TIMESTAMP"),
)


def quote(name: str) -> str:
    r"""``name`` as a backtick-quoted BigQuery identifier; never fails, never rejects.

    >>> quote("first name"), quote("a\\b")
    ('`first name`', '`a\\\\b`')
    """
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_all(names: Iterable[str]) -> str:
    """Quoted names joined by ``, ``.

    >>> quote_all(["pk", "from"])
    '`pk`, `from`'
    """
    return ", ".join(quote(name) for name in names)


@data_class(frozen=True, slots=True)
class TableRef:
    """A table (or view) ``project.dataset.table``."""

    project: str
    dataset: str
    table: str

    @property
    def sql(self) -> str:
        """The reference for SQL text, each part quoted on its own."""
        return f"{quote(self.project)}.{quote(self.dataset)}.{quote(self.table)}"

    @property
    def api(self) -> str:
        """The reference the client library takes: ``project.dataset.table``."""
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def path(self) -> str:
        """The resource name the Storage Write API takes."""
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{self.table}"

    @property
    def dataset_id(self) -> str:
        """``project.dataset``."""
        return f"{self.project}.{self.dataset}"

    def __str__(self) -> str:
        return self.api


@data_class(frozen=True, slots=True)
class QueryResult:
    """What a query returned: its rows, and for DML the rows it inserted, updated, deleted."""

    rows: list[dict[str, Any]]
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    affected: int = 0


def api_errors() -> tuple[type[BaseException], ...]:
    """What the BigQuery REST client raises when a call fails (imported on first use: the
    Lambda's light path never imports the client library)."""
    import requests  # noqa: PLC0415
    from google.api_core.exceptions import GoogleAPICallError  # noqa: PLC0415

    return (GoogleAPICallError, requests.exceptions.RequestException)


def api_retry(deadline: float = DEFAULT_DEADLINE) -> Any:
    """The client library's retry for metadata calls (get/create/update table), bounded."""
    return google_retry(deadline)


def _bounded(deadline: float) -> float:
    """``deadline``, cut to the command line's retry limit (``--retry-deadline``)."""
    limit = retry_limit()
    return deadline if limit is None else min(deadline, limit)


def param(name: str, value: Any, type_: str | None = None) -> bigquery.ScalarQueryParameter:
    """A scalar query parameter ``@name``; its type follows the Python value unless given.

    >>> param("since", datetime(2024, 1, 1)).type_
    'TIMESTAMP'
    """
    from google.cloud import bigquery  # noqa: PLC0415 (lazy: see api_errors)

    return bigquery.ScalarQueryParameter(name, type_ or _param_type(value), value)


def _param_type(value: Any) -> str:
    for python_type, bigquery_type in _PARAM_TYPES:
        if isinstance(value, python_type):
            return bigquery_type
    raise TypeError(f"No BigQuery parameter type for a {type(value).__name__}; pass type_.")


def run_query(
    client: bigquery.Client,
    sql: str,
    params: Sequence[bigquery.ScalarQueryParameter] = (),
    *,
    deadline: float = DEFAULT_DEADLINE,
) -> QueryResult:
    """Run ``sql`` with ``params`` and wait for it; errors become RetryableError/TerminalError.

    >>> run_query(client, "SELECT @x AS x", [param("x", 1)]).rows  # doctest: +SKIP
    [{'x': 1}]
    """
    from google.cloud import bigquery  # noqa: PLC0415 (lazy: see api_errors)

    deadline = _bounded(deadline)
    retry = api_retry(deadline)
    job_retry = bigquery.retry.DEFAULT_JOB_RETRY.with_timeout(deadline)
    config = bigquery.QueryJobConfig(query_parameters=list(params))
    try:
        job = client.query(sql, job_config=config, retry=retry, job_retry=job_retry)
        rows = [dict(row.items()) for row in job.result(retry=retry, timeout=deadline)]
    except api_errors() as exc:
        raise query_error(exc, sql) from exc
    stats = job.dml_stats
    return QueryResult(
        rows=rows,
        inserted=stats.inserted_row_count if stats else 0,
        updated=stats.updated_row_count if stats else 0,
        deleted=stats.deleted_row_count if stats else 0,
        affected=job.num_dml_affected_rows or 0,
    )


def query_error(exc: BaseException, sql: str) -> RetryableError | TerminalError:
    """The ddb2bq error for a failed statement: retryable when :func:`is_retryable` says so."""
    first_line = sql.strip().splitlines()[0] if sql.strip() else ""
    return api_error(exc, f"the statement starting {first_line[:80]!r}")


def api_error(exc: BaseException, what: str) -> RetryableError | TerminalError:
    """A failed BigQuery call on ``what`` as RetryableError or TerminalError, the cause named."""
    message = f"BigQuery failed on {what}: {type(exc).__name__}: {exc}"
    if is_retryable(exc):
        return RetryableError(message + " Trying again later may succeed.")
    return TerminalError(message)


def is_retryable(exc: BaseException) -> bool:
    """Whether a BigQuery error may pass: :func:`ddb2bq.bigquery.retry.classify`, plus DML that
    lost a race with a concurrent update of the same table (BigQuery asks to retry those)."""
    return classify(exc) or "concurrent update" in str(exc).lower()
