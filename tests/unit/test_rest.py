"""The light REST client: the requests it builds (the full client's, byte for byte where it
matters), its answers, its errors as classify reads them, and credentials applied and refreshed.
No sockets: a fake transport answers from a script."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from ddb2bq.bigquery.auth import AuthRequest
from ddb2bq.bigquery.errors import BigQueryHTTPError, classify, error_from_answer, splittable
from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.rest import RestClient, insert_all_body, table_path
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.tables import (
    column_of,
    column_of_json,
    layout_from_schema,
    layout_from_schema_json,
)
from ddb2bq.bigquery.transport import Answer
from ddb2bq.schema import build_layout
from tests.sink_data import changes, layout, rows_of

ENDPOINT = "http://bigquery.test:9050"
TABLE = "p.d.orders_changes"


@dataclass
class Sent:
    method: str
    url: str
    body: Any
    headers: dict[str, str]
    timeout: float


@dataclass
class FakeTransport:
    """Answers each request with the next of ``answers`` (an Answer or an exception to raise)."""

    answers: list[Answer | BaseException] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> Answer:
        decoded = body if body is None or not body.startswith(b"{") else orjson.loads(body)
        self.sent.append(Sent(method, url, decoded, dict(headers), timeout))
        answer = self.answers.pop(0) if self.answers else ok({})
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


def ok(payload: Any) -> Answer:
    return Answer(200, {"content-type": "application/json"}, orjson.dumps(payload))


def failed(status: int, reason: str, message: str = "it failed") -> Answer:
    error = {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}
    return Answer(status, {}, orjson.dumps({"error": error}))


def client(*answers: Answer | BaseException, **options: Any) -> tuple[RestClient, FakeTransport]:
    transport = FakeTransport(list(answers))
    return RestClient("p", endpoint=ENDPOINT, transport=transport, **options), transport


class RecordingClient(bigquery.Client):
    """The full client, its HTTP call replaced by a recorder: what would it send?"""

    def __init__(self) -> None:
        super().__init__(project="p", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        self.calls: list[dict[str, Any]] = []

    def _call_api(self, retry: Any, span_name: Any = None, span_attributes: Any = None,
                  job_ref: Any = None, headers: Any = None, **kwargs: Any) -> Any:  # fmt: skip
        self.calls.append(kwargs)
        return {"insertErrors": [{"index": "1", "errors": [{"reason": "invalid"}]}]}


# --- requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"row_ids": ["e1", None], "skip_invalid_rows": False},
        {"row_ids": ["e1", "e2"], "ignore_unknown_values": True, "template_suffix": "_x"},
        {"row_ids": ["e1", "e2"], "skip_invalid_rows": True, "ignore_unknown_values": False},
    ],
)
def test_insert_rows_json_sends_what_the_full_client_sends(options: dict[str, Any]) -> None:
    # GIVEN the same rows and options for the full client and the light one
    rows = [{"event_id": "e1", "item": '{"a":"ü"}'}, {"event_id": "e2", "n": 1.5}]
    full = RecordingClient()
    light_options = {**options, "row_ids": iter(options["row_ids"])}  # any iterable will do
    light, transport = client(
        ok({"insertErrors": [{"index": 1, "errors": [{"reason": "invalid"}]}]})
    )
    # WHEN both insert them
    expected = full.insert_rows_json(TABLE, rows, retry=None, **options)
    answer = light.insert_rows_json(TABLE, rows, **light_options)
    # THEN the light client sends the same method, path and body, and answers the same
    [call] = full.calls
    [sent] = transport.sent
    assert (sent.method, sent.url) == (call["method"], ENDPOINT + "/bigquery/v2" + call["path"])
    assert sent.body == call["data"]
    assert answer == expected == [{"index": 1, "errors": [{"reason": "invalid"}]}]
    assert sent.headers["Content-Type"] == "application/json"


def test_without_row_ids_each_row_gets_a_fresh_uuid_as_the_full_client_does() -> None:
    body = insert_all_body([{"a": 1}, {"a": 2}])
    ids = [row["insertId"] for row in body["rows"]]
    assert len(set(ids)) == 2
    assert all(len(i) == 36 for i in ids)


def test_bad_arguments_fail_as_the_full_client_fails() -> None:
    light, transport = client()
    with pytest.raises(TypeError, match="sequence of dicts"):
        light.insert_rows_json(TABLE, {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not generate enough IDs, error at index 1"):
        light.insert_rows_json(TABLE, [{"a": 1}, {"a": 2}], row_ids=["e1"])
    with pytest.raises(ValueError, match="retry=None"):
        light.insert_rows_json(TABLE, [{"a": 1}], retry=object())  # type: ignore[arg-type]
    assert transport.sent == []


def test_get_table_reads_the_table_resource() -> None:
    resource = {"schema": {"fields": [{"name": "event_id", "type": "STRING"}]}, "etag": "x"}
    light, transport = client(ok(resource))
    assert light.get_table("p.d.orders_changes", timeout=3) == resource
    [sent] = transport.sent
    assert (sent.method, sent.url, sent.body, sent.timeout) == (
        "GET",
        ENDPOINT + "/bigquery/v2/projects/p/datasets/d/tables/orders_changes",
        None,
        3,
    )
    assert "Content-Type" not in sent.headers


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ("d.t", "/projects/p/datasets/d/tables/t"),
        ("example.com:proj.d.t", "/projects/example.com:proj/datasets/d/tables/t"),
        ("p.d.a/b?c#d e", "/projects/p/datasets/d/tables/a%2Fb%3Fc%23d%20e"),
        ("p.d.tablé", "/projects/p/datasets/d/tables/tabl%C3%A9"),
    ],
)
def test_table_paths_are_escaped_segment_by_segment(table: str, path: str) -> None:
    assert table_path(table, "p") == path


def test_a_table_reference_object_reads_as_its_text() -> None:
    reference = bigquery.TableReference.from_string("p.d.t")
    assert table_path(reference, "other") == "/projects/p/datasets/d/tables/t"


@pytest.mark.parametrize("table", ["t", "p.d.", ".d.t"])
def test_a_reference_without_dataset_and_table_is_refused(table: str) -> None:
    with pytest.raises(ValueError, match="not a table reference"):
        table_path(table, "p")


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "retryable", "split"),
    [
        (failed(503, "backendError"), True, False),
        (failed(500, "internalError"), True, False),
        (failed(429, "rateLimitExceeded"), True, False),
        (failed(403, "rateLimitExceeded"), True, False),  # a quota, whatever the status
        (failed(403, "accessDenied"), False, False),
        (failed(404, "notFound"), False, False),
        (failed(400, "invalid", "Could not decode string as base64"), False, True),
        (Answer(502, {}, b"<html>Bad Gateway</html>"), True, False),
    ],
)
def test_error_answers_raise_what_classify_reads_as_it_reads_the_full_clients(
    answer: Answer, retryable: bool, split: bool
) -> None:
    light, _ = client(answer)
    with pytest.raises(BigQueryHTTPError) as caught:
        light.insert_rows_json(TABLE, [{"a": 1}], row_ids=["e1"])
    error = caught.value
    assert error.code == answer.status
    assert (classify(error), splittable(error)) == (retryable, split)


def test_an_error_reads_like_the_full_clients_and_keeps_bigquerys_errors() -> None:
    answer = failed(404, "notFound", "Not found: Table p:d.t")
    error = error_from_answer(answer, "GET", "https://x/bigquery/v2/projects/p")
    assert str(error) == "404 GET https://x/bigquery/v2/projects/p: Not found: Table p:d.t"
    assert error.reasons == ["notFound"]
    assert error.errors == [{"reason": "notFound", "message": "Not found: Table p:d.t"}]


def test_a_non_json_error_body_becomes_the_message_cut_short() -> None:
    error = error_from_answer(Answer(502, {}, b"x" * 5000), "POST", "u")
    assert (error.code, error.reasons, len(error.message)) == (502, [], 1000)
    assert error_from_answer(Answer(500, {}, b""), "POST", "u").message == "unknown error"


def test_network_failures_pass_through_as_the_retryable_errors_they_are() -> None:
    light, _ = client(ConnectionError("reset"), TimeoutError("slow"))
    for _ in range(2):
        with pytest.raises((ConnectionError, TimeoutError)) as caught:
            light.get_table(TABLE)
        assert classify(caught.value)


# --- the writer over the light client -----------------------------------------------------------


def test_the_insert_all_writer_retries_and_maps_row_errors_through_the_light_client() -> None:
    # GIVEN BigQuery busy once, then refusing the second row of the batch (the others stopped)
    refusal = {
        "insertErrors": [
            {"index": 0, "errors": [{"reason": "stopped", "message": ""}]},
            {"index": 1, "errors": [{"reason": "invalid", "location": "total", "message": "no"}]},
            {"index": 2, "errors": [{"reason": "stopped", "message": ""}]},
        ]
    }
    light, transport = client(failed(503, "backendError"), ok(refusal), ok({}))
    policy = RetryPolicy(sleep=lambda _: None, random=lambda: 0.0)
    writer = InsertAllWriter(light, TABLE, layout().changelog_columns(), retry_policy=policy)
    # WHEN a batch of three is written
    result = writer.write(rows_of(changes(3)))
    # THEN the bad row is a terminal failure naming its column, the others landed on a re-send
    assert (result.written, result.retries) == (2, 1)
    assert [(f.index, f.retryable, f.column) for f in result.failures] == [(1, False, "total")]
    assert [len(s.body["rows"]) for s in transport.sent] == [3, 3, 2]
    assert transport.sent[0].body["skipInvalidRows"] is False
    assert [r["insertId"] for r in transport.sent[0].body["rows"]] == [
        c.event_id for c in changes(3)
    ]


# --- credentials --------------------------------------------------------------------------------


class FakeCredentials:
    """Tokens t1, t2, ...: a new one at each refresh; applied as google-auth applies them."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.requests: list[Any] = []

    def refresh(self, request: Any) -> None:
        self.requests.append(request)
        self.refreshes += 1

    def before_request(self, request: Any, method: str, url: str, headers: dict[str, str]) -> None:
        if self.refreshes == 0:
            self.refresh(request)
        headers["authorization"] = f"Bearer t{self.refreshes}"


def test_credentials_are_applied_and_refreshed_once_after_a_401() -> None:
    # GIVEN credentials whose first token BigQuery no longer takes
    credentials = FakeCredentials()
    light, transport = client(failed(401, "authError"), ok({"schema": {}}))
    light = RestClient("p", credentials, endpoint=ENDPOINT, transport=transport)  # type: ignore[arg-type]
    # WHEN a call is made  THEN it is sent again with a new token, and answered
    assert light.get_table(TABLE) == {"schema": {}}
    assert [s.headers["authorization"] for s in transport.sent] == ["Bearer t1", "Bearer t2"]
    # ... and the token requests went through google-auth's transport over the same connections
    assert all(isinstance(r, AuthRequest) for r in credentials.requests)


def test_a_second_401_is_an_error_not_a_loop() -> None:
    light, transport = client(failed(401, "authError"), failed(401, "authError"))
    light = RestClient("p", FakeCredentials(), endpoint=ENDPOINT, transport=transport)  # type: ignore[arg-type]
    with pytest.raises(BigQueryHTTPError) as caught:
        light.get_table(TABLE)
    assert (caught.value.code, len(transport.sent), classify(caught.value)) == (401, 2, False)


def test_without_credentials_no_authorization_is_sent() -> None:
    light, transport = client(failed(401, "authError"))
    with pytest.raises(BigQueryHTTPError):
        light.get_table(TABLE)
    assert len(transport.sent) == 1
    assert not {k.lower() for k in transport.sent[0].headers} & {"authorization"}


def test_google_auth_requests_travel_over_the_transport_and_fail_as_google_auth_expects() -> None:
    # GIVEN google-auth's request over a transport that answers once, then cannot connect
    transport = FakeTransport([Answer(200, {"x": "1"}, b'{"access_token": "a"}')])
    request = AuthRequest(transport, timeout=7)
    # WHEN a token endpoint is called  THEN the answer is google-auth's response
    response = request("https://sts.googleapis.com/v1/token", "POST", b'{"k": 1}', {"h": "v"})
    assert (response.status, response.headers, response.data) == (
        200,
        {"x": "1"},
        b'{"access_token": "a"}',
    )
    assert (transport.sent[0].method, transport.sent[0].timeout) == ("POST", 7)
    # ... and a failure to connect is google-auth's TransportError, the cause kept
    transport.answers.append(ConnectionError("refused"))
    with pytest.raises(auth_exceptions.TransportError) as caught:
        request("https://sts.googleapis.com/v1/token", "POST", "a=b")
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert classify(caught.value)


def test_close_closes_the_transport() -> None:
    light, transport = client()
    light.close()
    assert transport.closed


# --- the schema as JSON -------------------------------------------------------------------------


def test_schema_json_gives_the_layout_schema_fields_give() -> None:
    # GIVEN a changelog schema with every kind of column, as SchemaFields and as REST JSON
    promoted = {"status": "STRING", "first name": "NUMERIC", "tags": "ARRAY<STRING>", "m": "JSON"}
    stored = build_layout([("Id", "N"), ("Sk", "B")], promoted=promoted, soft_deletes=True)
    fields = [
        bigquery.SchemaField(c.name, c.field_type, mode=c.field_mode, description=description)
        for c in stored.changelog_columns()
        for description in [f"DynamoDB attribute: {c.attribute}" if c.attribute else None]
    ]
    api_fields = [{**f.to_api_repr(), "type": _legacy(f.field_type)} for f in fields]
    base = build_layout([("Id", "N"), ("Sk", "B")], soft_deletes=True)
    # THEN both read back the same layout, the one stored
    assert layout_from_schema_json(api_fields, base) == layout_from_schema(fields, base) == stored
    assert [column_of_json(f) for f in api_fields] == [column_of(f) for f in fields]


def _legacy(kind: str) -> str:
    """The REST API spells some types the legacy way."""
    return {"INT64": "INTEGER", "BOOL": "BOOLEAN", "FLOAT64": "FLOAT"}.get(kind, kind)


def test_classifying_the_light_clients_errors_imports_no_client_library() -> None:
    # GIVEN a fresh interpreter with only the light path imported
    code = (
        "import sys\n"
        "from ddb2bq.bigquery.errors import BigQueryHTTPError\n"
        "from ddb2bq.bigquery.errors import classify, splittable\n"
        "from ddb2bq.bigquery import clients, factory, tables, insert_all\nimport ddb2bq.pipeline\n"
        "answers = [classify(BigQueryHTTPError(503, 'x')), splittable(BigQueryHTTPError(400, 'x')),\n"
        "           classify(ValueError('x')), classify(ConnectionResetError())]\n"
        "loaded = [m for m in sys.modules if m.startswith(('google', 'grpc', 'requests'))]\n"
        "print(answers, loaded)\n"
    )
    # WHEN errors are classified  THEN as expected, and nothing of Google's was imported
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[True, True, False, True] []"


def test_the_writer_sends_through_the_light_client_the_row_bytes_it_measured() -> None:
    # GIVEN the insertAll writer over the light client, and a batch of rows
    from ddb2bq.bigquery.insert_all import InsertAllWriter  # noqa: PLC0415
    from tests.sink_data import changes, layout, rows_of  # noqa: PLC0415

    light, transport = client(ok({}))
    raw: list[bytes] = []
    send = transport.send

    def keep(method: str, url: str, body: bytes | None, *args: Any) -> Answer:
        raw.append(body or b"")
        return send(method, url, body, *args)

    transport.send = keep  # type: ignore[method-assign]
    batch = rows_of(changes(3))
    writer = InsertAllWriter(light, "p.d.orders_changes", layout().changelog_columns())
    # WHEN the batch is written
    result = writer.write(batch)
    # THEN the body holds each row as the writer encoded it, the same JSON dicts would give
    (body,) = raw
    sent = orjson.loads(body)["rows"]
    assert [r["insertId"] for r in sent] == [rows.change.event_id for rows in batch]
    expected = [{k: v for k, v in rows.changelog.items() if v is not None} for rows in batch]
    assert [r["json"] for r in sent] == expected
    # AND the bytes it counted are the bytes of the rows in the request
    rows_text = body[body.index(b"[") + 1 : body.rindex(b"]")]
    assert result.bytes_sent == len(rows_text) + 1
