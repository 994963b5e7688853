"""The light REST client over real sockets: keep-alive connections (and the one a server closed
while idle), gzip answers, refused and silent servers; then on the emulator, the same layout,
the same row errors and the same fault handling as the full client."""

from __future__ import annotations

import datetime
import gzip
import http.server
import io
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.aws_lambda import Handler, StreamEvent
from ddb2bq.bigquery.errors import classify
from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.rest import RestClient
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.tables import TableRefs, init_tables, initial_layout, load_layout
from ddb2bq.bigquery.transport import Connections
from ddb2bq.config import Config, load_config
from ddb2bq.exceptions import ConfigError
from ddb2bq.local import Server
from ddb2bq.schema import Column
from tests.integration.fault_proxy import HttpFaultProxy
from tests.sink_data import changes, rows_of

POLICY = RetryPolicy(max_attempts=8, initial=0.05, maximum=0.5, deadline=20.0, random=lambda: 1.0)
FIXTURES = Path(__file__).parents[1] / "fixtures"


# --- a scripted HTTP/1.1 server ---------------------------------------------------------------


# Answers written byte for byte (path "/raw/<name>"), as servers other than this one send them.
RAW_ANSWERS = {
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'8;ext=1\r\n{"path":\r\n0c\r\n "/chunked"}\r\n0\r\nTrailer: x\r\n\r\n',
    "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n"
    b'{"path": "/continue"}',
    "close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 18\r\n\r\n"
    b'{"path": "/close"}',
    "to-the-end": b'HTTP/1.0 200 OK\r\n\r\n{"path": "/to-the-end"}',
    "no-content": b"HTTP/1.1 204 No Content\r\n\r\n",
    "cut-short": b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"path"',
    "not-http": b"SSH-2.0-OpenSSH_9.2\r\n",
    "many-headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    "bad-length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise

    def do_GET(self) -> None:
        if self.path.startswith("/raw/"):
            cast(ScriptedServer, self.server).requests.append(self.raw_requestline)
            self.wfile.write(RAW_ANSWERS[self.path.removeprefix("/raw/")])
            self.close_connection = not self.path.endswith(("chunked", "continue", "no-content"))
            return
        body = json.dumps({"path": self.path}).encode()
        headers = {"Content-Type": "application/json"}
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/gzip":
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # "/idle-close": the server drops the connection after answering, without saying so
        self.close_connection = self.path == "/idle-close"

    def setup(self) -> None:
        super().setup()
        cast(ScriptedServer, self.server).connections += 1

    def log_message(self, *args: Any) -> None:
        pass


class ScriptedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.finished = threading.Event()
        self.requests: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)  # the socket is closed: the client can see it now
        self.finished.set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout test) breaks the pipe: expected


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    thread = threading.Thread(target=scripted.serve_forever, daemon=True)
    thread.start()
    yield scripted
    scripted.shutdown()
    scripted.server_close()
    thread.join(timeout=5)


def get(connections: Connections, url: str, timeout: float = 5.0) -> Any:
    answer = connections.send("GET", url, None, {}, timeout)
    assert answer.status == 200
    return json.loads(answer.data)


def test_requests_share_one_keep_alive_connection(server: ScriptedServer) -> None:
    connections = Connections()
    paths = [get(connections, f"{server.url}/n{i}")["path"] for i in range(3)]
    connections.close()
    assert (paths, server.connections) == (["/n0", "/n1", "/n2"], 1)


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed(
    server: ScriptedServer,
) -> None:
    # GIVEN a connection the server closed after its answer, without a Connection: close
    connections = Connections()
    assert get(connections, f"{server.url}/idle-close") == {"path": "/idle-close"}
    assert server.finished.wait(5)
    # WHEN the next request goes to the same server  THEN it is sent on a new connection
    assert get(connections, f"{server.url}/next") == {"path": "/next"}
    connections.close()
    assert server.connections == 2


def test_a_gzip_answer_is_decompressed(server: ScriptedServer) -> None:
    assert get(Connections(), f"{server.url}/gzip") == {"path": "/gzip"}


def test_a_refused_connection_is_a_retryable_connection_error() -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(ConnectionError) as caught:
        Connections().send("GET", f"http://127.0.0.1:{port}/x", None, {}, 5.0)
    assert f"GET http://127.0.0.1:{port}/x" in str(caught.value)
    assert classify(caught.value)


def test_a_server_that_does_not_answer_in_time_is_a_retryable_timeout(
    server: ScriptedServer,
) -> None:
    connections = Connections()
    with pytest.raises(TimeoutError, match=r"no answer within 0.2 s") as caught:
        connections.send("GET", f"{server.url}/slow", None, {}, 0.2)
    assert classify(caught.value)
    # ... and the connection is usable again afterwards (a fresh one)
    assert get(connections, f"{server.url}/after") == {"path": "/after"}


@pytest.mark.parametrize("name", ["chunked", "continue", "close", "to-the-end"])
def test_answers_of_every_framing_are_read_whole(server: ScriptedServer, name: str) -> None:
    # GIVEN a server answering chunked, after a 100 Continue, with Connection: close, or an
    # HTTP/1.0 answer read to the end of the connection
    connections = Connections()
    # WHEN the client asks twice  THEN it reads each answer whole, both times
    assert get(connections, f"{server.url}/raw/{name}") == {"path": f"/{name}"}
    assert get(connections, f"{server.url}/raw/{name}") == {"path": f"/{name}"}
    connections.close()
    # ... on one connection when the answer kept it open, on a new one when it closed it
    kept = name in ("chunked", "continue")
    assert server.connections == (1 if kept else 2)


def test_an_answer_without_a_body_keeps_the_connection(server: ScriptedServer) -> None:
    connections = Connections()
    answers = [connections.send("GET", f"{server.url}/raw/no-content", None, {}, 5.0) for _ in "ab"]
    connections.close()
    assert [(a.status, a.data) for a in answers] == [(204, b""), (204, b"")]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("cut-short", "the answer ended after 7 of its 100 bytes"),
        ("not-http", "does not start with an HTTP/1.x status line: b'SSH-2.0"),
        ("many-headers", "the answer holds more than 100 headers"),
        ("bad-chunk", "the answer holds a bad chunk size b'-1'"),
        ("bad-length", "the answer's Content-Length '-1' is not a number"),
    ],
)
def test_an_answer_that_is_not_whole_http_is_a_retryable_connection_error(
    server: ScriptedServer, name: str, why: str
) -> None:
    # GIVEN a server whose answer is cut short or is not HTTP/1.x
    connections = Connections()
    # WHEN the client reads it  THEN a ConnectionError names the request and what was wrong
    with pytest.raises(ConnectionError) as caught:
        connections.send("GET", f"{server.url}/raw/{name}", None, {}, 5.0)
    assert str(caught.value).startswith(f"GET {server.url}/raw/{name}: BadAnswerError: ")
    assert why in str(caught.value)
    assert classify(caught.value)
    # ... and the next request goes out on a new connection
    assert get(connections, f"{server.url}/after") == {"path": "/after"}
    connections.close()
    assert server.connections == 2


def test_the_request_carries_its_host_length_and_body_in_one_piece(server: ScriptedServer) -> None:
    # GIVEN a listening socket standing for the server, to read the request's bytes as sent
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        seen: list[bytes] = []

        def answer_once() -> None:
            peer, _ = listener.accept()
            with peer:
                data = b""
                while not data.endswith(b"{}"):
                    data += peer.recv(65536)
                seen.append(data)
                peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")

        thread = threading.Thread(target=answer_once, daemon=True)
        thread.start()
        # WHEN the client POSTs a body with headers of its own
        answer = Connections().send(
            "POST", f"http://127.0.0.1:{port}/p?q=1", b"{}", {"X-Goog-Api-Client": "ddb2bq"}, 5.0
        )
        thread.join(5)
    # THEN the request line, Host (with the port), identity encoding, length and body are exact
    assert (answer.status, answer.data) == (200, b"[]")
    assert seen == [
        b"POST /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n"
        b"Content-Length: 2\r\nX-Goog-Api-Client: ddb2bq\r\n\r\n{}" % port
    ]


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    server: ScriptedServer,
) -> None:
    with pytest.raises(ValueError, match="'X-Evil': a name or value holds a line break"):
        Connections().send("GET", f"{server.url}/x", None, {"X-Evil": "a\r\nHost: b"}, 5.0)
    assert server.connections == 0


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` signed by its own key, and that key (PEM files)."""
    from cryptography import x509  # noqa: PLC0415 (this test only)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ScriptedServer, Path]]:
    cert_file, key_file = _self_signed(tmp_path)
    scripted = ScriptedServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    scripted.socket = context.wrap_socket(scripted.socket, server_side=True)
    thread = threading.Thread(target=scripted.serve_forever, daemon=True)
    thread.start()
    yield scripted, cert_file
    scripted.shutdown()
    scripted.server_close()
    thread.join(timeout=5)


def test_https_answers_come_over_one_verified_keep_alive_tls_connection(
    tls_server: tuple[ScriptedServer, Path],
) -> None:
    # GIVEN an HTTPS server whose certificate the client's context trusts
    server, cert_file = tls_server
    url = f"https://localhost:{server.server_address[1]}"
    connections = Connections(ssl.create_default_context(cafile=str(cert_file)))
    # WHEN the client asks three times, one answer chunked
    paths = [get(connections, f"{url}/n{i}")["path"] for i in range(2)]
    paths.append(get(connections, f"{url}/raw/chunked")["path"])
    connections.close()
    # THEN every answer is read whole, on one TLS connection
    assert (paths, server.connections) == (["/n0", "/n1", "/chunked"], 1)


def test_an_https_server_whose_certificate_is_not_trusted_is_a_connection_error(
    tls_server: tuple[ScriptedServer, Path],
) -> None:
    # GIVEN an HTTPS server with a self-signed certificate, and the system's trust store
    server, _ = tls_server
    url = f"https://localhost:{server.server_address[1]}/x"
    # WHEN the client sends to it  THEN nothing is sent: a ConnectionError says why
    with pytest.raises(
        ConnectionError, match=r"GET https://localhost:\d+/x: SSLCertVerificationError"
    ):
        Connections(ssl.create_default_context()).send("GET", url, None, {}, 5.0)


# --- on the emulator --------------------------------------------------------------------------


def light(endpoint: str, project: str) -> RestClient:
    return RestClient(project, endpoint=endpoint, timeout=30)


def replication(
    bigquery_server: Server, bq_client: bigquery.Client, dataset: bigquery.Dataset, **env: str
) -> Config:
    environ = {
        "DDB2BQ_SOURCE_TABLE": "orders",
        "DDB2BQ_TARGET_PROJECT": bq_client.project,
        "DDB2BQ_TARGET_DATASET": dataset.dataset_id,
        "DDB2BQ_TARGET_ENDPOINT": bigquery_server.endpoint,
        "DDB2BQ_TARGET_GRPC_ENDPOINT": bigquery_server.grpc_endpoint,
        "DDB2BQ_TARGET_WRITER": "insert_all",
        **env,
    }
    return load_config(environ=environ)


def test_both_clients_read_the_same_layout_from_the_same_changelog(
    bigquery_server: Server, bq_client: bigquery.Client, dataset: bigquery.Dataset
) -> None:
    # GIVEN a changelog with keys of both kinds, soft deletes and hostile promoted names
    types = {
        "Status": "STRING",
        "status": "INT64",
        "first name": "NUMERIC",
        "blob": "BYTES",
    }
    config = replication(
        bigquery_server,
        bq_client,
        dataset,
        DDB2BQ_TARGET_DELETES="soft",
        DDB2BQ_COLUMNS_PROMOTE=",".join(types),
        DDB2BQ_COLUMNS_TYPES=json.dumps(types),
    )
    init_tables(bq_client, config, initial_layout(config, [("pk", "S"), ("sk", "B")]))
    refs = TableRefs.from_config(config)
    # WHEN each client reads it  THEN the layouts are equal, promoted columns and all
    from_full = load_layout(bq_client, refs, soft=True)
    from_light = load_layout(light(bigquery_server.endpoint, bq_client.project), refs, soft=True)
    assert from_light == from_full
    assert {c.attribute for c in from_light.promoted} == set(types)
    assert [c.type for c in from_light.keys] == ["STRING", "BYTES"]


def test_a_missing_changelog_is_the_same_config_error_for_both_clients(
    bigquery_server: Server, bq_client: bigquery.Client, dataset: bigquery.Dataset
) -> None:
    refs = TableRefs.from_config(replication(bigquery_server, bq_client, dataset))
    for client in (bq_client, light(bigquery_server.endpoint, bq_client.project)):
        with pytest.raises(ConfigError, match="does not exist; run `ddb2bq init`"):
            load_layout(client, refs)


def test_a_refused_row_gets_the_insert_errors_the_full_client_gets(
    bigquery_server: Server,
    bq_client: bigquery.Client,
    changelog: tuple[bigquery.Table, list[Column]],
) -> None:
    # GIVEN a good row and a row whose total is not a number
    table, _ = changelog
    good, bad = (dict(r.changelog) for r in rows_of(changes(2)))
    bad["total"] = "not a number"
    rows = [{k: v for k, v in r.items() if v is not None} for r in (good, bad)]
    ref = f"{table.project}.{table.dataset_id}.{table.table_id}"
    # WHEN each client sends them (all or nothing)
    options: dict[str, Any] = {"row_ids": [None, None], "skip_invalid_rows": False}
    full = bq_client.insert_rows_json(ref, rows, retry=None, **options)
    lighter = light(bigquery_server.endpoint, table.project).insert_rows_json(ref, rows, **options)
    # THEN both get the same answer: the bad row invalid at its column, the good one stopped
    assert lighter == full
    assert [(e["index"], e["errors"][0]["reason"]) for e in lighter] == [
        (0, "stopped"),
        (1, "invalid"),
    ]


@pytest.mark.parametrize(
    "faults", [["503"], ["reset"], ["503", "reset", "429"], ["reset_after"]], ids="-".join
)
def test_the_writer_over_the_light_client_rides_out_faults_and_lands_exactly(
    faults: list[str],
    bq_client: bigquery.Client,
    bq_retry: Retry,
    bigquery_server: Server,
    changelog: tuple[bigquery.Table, list[Column]],
) -> None:
    table, columns = changelog
    with HttpFaultProxy(bigquery_server.endpoint, faults) as proxy:
        client = light(proxy.url, table.project)
        writer = InsertAllWriter(client, table.reference, columns, retry_policy=POLICY, timeout=10)
        result = writer.write(rows_of(changes(5)))
    assert (result.written, result.failures, result.retries) == (5, (), len(faults))
    sql = f"SELECT event_id FROM `{table.project}.{table.dataset_id}.{table.table_id}` ORDER BY 1"
    rows = bq_client.query(sql, retry=bq_retry, job_retry=bq_retry).result(timeout=30)
    assert [r["event_id"] for r in rows] == [f"evt-{n:04d}-insert" for n in range(1, 6)]


def test_a_new_promoted_attribute_on_the_light_path_adds_its_column_with_the_full_client(
    bigquery_server: Server,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
) -> None:
    # GIVEN the Lambda on insert_all with Message promoted, its column not made yet
    config = replication(
        bigquery_server,
        bq_client,
        dataset,
        DDB2BQ_SOURCE_TABLE="ExampleTableWithStream",
        DDB2BQ_COLUMNS_PROMOTE="Message",
        DDB2BQ_DEAD_LETTERS_PATH=str(tmp_path / "dead-letters"),
    )
    init_tables(bq_client, config, initial_layout(config, [("Id", "N")]))
    handler = Handler(config, metrics_stream=io.StringIO())
    event = json.loads((FIXTURES / "aws_sample_event.json").read_text())
    # WHEN the sample event (whose items carry a Message) is handled
    assert handler(cast(StreamEvent, event)) == {"batchItemFailures": []}
    # THEN the column was added, and the rows carry it
    refs = TableRefs.from_config(config)
    schema = bq_client.get_table(refs.changes.api, retry=bq_retry).schema
    assert [f.name for f in schema][-1] == "Message"
    sql = f"SELECT Id, Message FROM {refs.changes.sql} ORDER BY seq"
    rows = bq_client.query(sql, retry=bq_retry, job_retry=bq_retry).result(timeout=30)
    assert [(r["Id"], r["Message"]) for r in rows] == [
        (Decimal(101), "New item!"),
        (Decimal(101), "This item has changed"),
        (Decimal(101), None),
    ]
