"""A light BigQuery REST client: the two calls of the Lambda's ``insertAll`` write, on the
standard library.

Importing ``google.cloud.bigquery`` costs a cold start about 300 ms (``requests``,
``google.api_core``, google-auth's ``requests`` transport, ...), more than the rest of the
function. The Lambda's write makes two REST calls, which :class:`RestClient` makes with the
semantics of the ``google.cloud.bigquery.Client`` methods of the same names:

========================================  ======================================================
``get_table(table)``                      ``GET .../projects/P/datasets/D/tables/T``: the table
                                          resource as JSON (``["schema"]["fields"]``), where the
                                          full client returns a ``Table`` built from it
``insert_rows_json(table, rows, ...)``    ``POST .../tables/T/insertAll`` with the same body the
                                          full client sends; returns the ``insertErrors``
                                          (``[{"index": i, "errors": [...]}]``), never raises
                                          for a row
========================================  ======================================================

Over sockets (:mod:`ddb2bq.bigquery.transport`), one keep-alive connection per host; a
connection the server closed while idle is noticed before it is used, and replaced. An HTTP error answer raises
:class:`BigQueryHTTPError` with the status code and BigQuery's ``errors`` (their ``reason`` is
what :func:`ddb2bq.bigquery.errors.classify` reads, as for the full client's exceptions); a network
failure raises ``ConnectionError`` or ``TimeoutError``. Nothing is retried here (the writers'
:class:`~ddb2bq.bigquery.retry.RetryPolicy` does that), except one resend after HTTP 401 with
refreshed credentials, as google-auth's authorized sessions do. No request waits past the
current deadline (:func:`~ddb2bq.contract.current_deadline`): the transport cuts its timeout.

Credentials are google-auth credentials, refreshed through these same connections
(:mod:`ddb2bq.bigquery.auth`), so neither ``requests`` nor ``urllib3`` is imported; ``None``
sends no ``Authorization`` header (the local emulator). Proxies set in the environment
(``HTTPS_PROXY``) are not used. Thread-safe: requests are sent one at a time.

>>> client = RestClient("my-project", credentials)  # doctest: +SKIP
>>> client.insert_rows_json("my-project.dynamodb.orders_changes", [{"event_id": "e1", ...}],
...                         row_ids=["e1"], skip_invalid_rows=False)  # doctest: +SKIP
[]
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ddb2bq.bigquery.errors import error_from_answer
from ddb2bq.bigquery.transport import Answer, Connections, Transport

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.auth.transport import Request

DEFAULT_ENDPOINT = "https://bigquery.googleapis.com"
DEFAULT_TIMEOUT = 60.0
"""Seconds to wait for a connection or an answer when the call gives no timeout."""

_API_ROOT = "/bigquery/v2"
_PATH_SAFE = "!$&'()*+,;=:@~"  # RFC 3986 characters of a path segment: kept, the rest escaped
_USER_AGENT = "ddb2bq (light REST client)"


def table_path(table: object, default_project: str) -> str:
    """The REST path of ``table`` (``project.dataset.table`` text, or ``dataset.table`` in
    ``default_project``; a :class:`~ddb2bq.bigquery.sql.TableRef` reads as the former).

    >>> table_path("my-project.dynamodb.orders_changes", "other")
    '/projects/my-project/datasets/dynamodb/tables/orders_changes'
    >>> table_path("dynamodb.first name", "example.com:p")
    '/projects/example.com:p/datasets/dynamodb/tables/first%20name'
    """
    text = str(table)
    parts = text.rsplit(".", 2)  # a project may hold dots ("example.com:p"); the others may not
    if len(parts) == 2:
        parts = [default_project, *parts]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{text!r} is not a table reference: write project.dataset.table.")
    project, dataset, name = (quote(part, safe=_PATH_SAFE) for part in parts)
    return f"/projects/{project}/datasets/{dataset}/tables/{name}"


def insert_all_body(
    json_rows: Sequence[Mapping[str, Any]] | Iterator[Mapping[str, Any]],
    row_ids: Iterable[str | None] | None = None,
    *,
    skip_invalid_rows: bool | None = None,
    ignore_unknown_values: bool | None = None,
    template_suffix: str | None = None,
) -> dict[str, Any]:
    """The ``insertAll`` request body, as ``Client.insert_rows_json`` builds it: one
    ``{"json": row, "insertId": id}`` per row (``row_ids`` None: a random UUID each), and the
    options that are not None.

    >>> insert_all_body([{"a": 1}], ["e1"], skip_invalid_rows=False)
    {'rows': [{'json': {'a': 1}, 'insertId': 'e1'}], 'skipInvalidRows': False}
    """
    if not isinstance(json_rows, Sequence | Iterator):
        raise TypeError("json_rows argument should be a sequence of dicts")
    ids = iter(row_ids) if row_ids is not None else None
    rows = []
    for index, row in enumerate(json_rows):
        if ids is None:
            insert_id: str | None = str(uuid.uuid4())
        else:
            insert_id = next(ids, _MISSING)
            if insert_id is _MISSING:
                raise ValueError(f"row_ids did not generate enough IDs, error at index {index}")
        rows.append({"json": row, "insertId": insert_id})
    body: dict[str, Any] = {"rows": rows}
    options = (
        ("skipInvalidRows", skip_invalid_rows),
        ("ignoreUnknownValues", ignore_unknown_values),
        ("templateSuffix", template_suffix),
    )
    body.update((key, value) for key, value in options if value is not None)
    return body


_MISSING: Any = object()


class RestClient:
    """A BigQuery REST client for ``get_table`` and ``insert_rows_json`` only (see the module).

    ``credentials``: google-auth credentials, or None for none (the local emulator);
    ``endpoint``: the API root (``http://127.0.0.1:9050`` for an emulator); ``timeout``: seconds
    per request when a call gives none; ``transport``: how requests are sent (default:
    :class:`Connections`).
    """

    def __init__(
        self,
        project: str,
        credentials: Credentials | None = None,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
    ) -> None:
        self.project = project
        self._credentials = credentials
        self._root = endpoint.rstrip("/") + _API_ROOT
        self._timeout = timeout
        self._transport: Transport = transport or Connections()
        self._auth_request: Request | None = None

    def get_table(self, table: object, *, timeout: float | None = None) -> dict[str, Any]:
        """The table resource (``tables.get``); raises BigQueryHTTPError 404 (reason
        ``notFound``) when the table does not exist.

        >>> client.get_table("p.d.orders_changes")["schema"]["fields"][0]  # doctest: +SKIP
        {'name': 'event_id', 'type': 'STRING', 'mode': 'REQUIRED'}
        """
        return self._call("GET", table_path(table, self.project), timeout=timeout)

    takes_json_fragments = True
    """Rows may be ``orjson.Fragment``: JSON already encoded, sent as it is (the writer's)."""

    def insert_rows_json(  # noqa: PLR0917 (the full client's signature)
        self,
        table: object,
        json_rows: Sequence[Mapping[str, Any]] | Iterator[Mapping[str, Any]],
        row_ids: Iterable[str | None] | None = None,
        skip_invalid_rows: bool | None = None,
        ignore_unknown_values: bool | None = None,
        template_suffix: str | None = None,
        retry: None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Stream ``json_rows`` (``tabledata.insertAll``); return one ``{"index", "errors"}``
        per refused row (empty when every row landed).

        ``row_ids`` are the insert ids (None: a random UUID per row). ``retry`` must be None:
        this client sends once (the full client's ``retry`` object has no meaning here).
        """
        if retry is not None:
            raise ValueError("RestClient sends each request once: pass retry=None.")
        body = insert_all_body(
            json_rows,
            row_ids,
            skip_invalid_rows=skip_invalid_rows,
            ignore_unknown_values=ignore_unknown_values,
            template_suffix=template_suffix,
        )
        path = table_path(table, self.project) + "/insertAll"
        response = self._call("POST", path, body, timeout=timeout)
        return [
            {"index": int(error["index"]), "errors": error["errors"]}
            for error in response.get("insertErrors", ())
        ]

    def close(self) -> None:
        """Close the open connections (a later call opens new ones)."""
        self._transport.close()

    def _call(
        self, method: str, path: str, body: Any = None, *, timeout: float | None
    ) -> dict[str, Any]:
        url = self._root + path
        data = None if body is None else orjson.dumps(body)
        wait = self._timeout if timeout is None else timeout
        answer = self._send(method, url, data, wait)
        if answer.status == 401 and self._credentials is not None:
            # a stale or revoked token: refreshed, and the request sent once more
            self._credentials.refresh(self._auth())  # type: ignore[no-untyped-call]
            answer = self._send(method, url, data, wait)
        if not 200 <= answer.status < 300:
            raise error_from_answer(answer, method, url)
        result = orjson.loads(answer.data) if answer.data else {}
        return result if isinstance(result, dict) else {}

    def _send(self, method: str, url: str, data: bytes | None, timeout: float) -> Answer:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip"}
        headers["User-Agent"] = _USER_AGENT
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._credentials is not None:
            self._credentials.before_request(self._auth(), method, url, headers)  # type: ignore[no-untyped-call]
        return self._transport.send(method, url, data, headers, timeout)

    def _auth(self) -> Request:
        if self._auth_request is None:
            from ddb2bq.bigquery.auth import AuthRequest  # noqa: PLC0415 (google-auth: lazy)

            self._auth_request = AuthRequest(self._transport, self._timeout)
        return self._auth_request
