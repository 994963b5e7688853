"""Fault-injecting proxies for the integration tests: HTTP (BigQuery REST) and raw TCP (gRPC).

Each listens on 127.0.0.1 on a free port, forwards to an upstream server, and applies a script
of faults, one per request (HTTP) or per connection (TCP), then passes everything through::

    with HttpFaultProxy(bigquery_server.endpoint, ["503", "429", "reset"]) as proxy:
        client = bigquery.Client(..., client_options=ClientOptions(api_endpoint=proxy.url))

=================  ===============================================================================
fault              what the client sees
=================  ===============================================================================
``"503"``          HTTP 503 with BigQuery's error body (reason ``backendError``); not forwarded
``"429"``          HTTP 429 with reason ``rateLimitExceeded``; not forwarded
``"reset"``        the connection reset (RST) after the request is read; not forwarded
``"reset_after"``  the request IS forwarded and answered upstream, then the connection is reset
                   before the client gets the answer: the write happened, the client cannot know
``"pass"``         forwarded as is
=================  ===============================================================================

The TCP proxy takes ``"reset"`` (the connection is reset as soon as it is accepted) and ``"pass"``.

Thread-based and bounded: every socket has a timeout, :meth:`stop` closes the listener and every
open connection and joins the threads, so nothing outlives the ``with`` block.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import urlsplit

HOST = "127.0.0.1"
TIMEOUT = 30.0
_STATUS = {"503": (503, "Service Unavailable", "backendError"), "429": (429, "Too Many Requests", "rateLimitExceeded")}  # fmt: skip


class _Proxy:
    """The listener, the fault script and the bookkeeping shared by both proxies."""

    def __init__(self, upstream: tuple[str, int], faults: Sequence[str]) -> None:
        self.upstream = upstream
        self._faults = list(faults)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.seen = 0
        self.injected: list[str] = []
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]

    def next_fault(self) -> str:
        """The fault for the next request or connection (``pass`` once the script is done)."""
        with self._lock:
            self.seen += 1
            fault = self._faults.pop(0) if self._faults else "pass"
            if fault != "pass":
                self.injected.append(fault)
            return fault

    def start(self) -> None:
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            _close(sock)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> _Proxy:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(TIMEOUT)
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, self._track(client))

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _connect_upstream(self) -> socket.socket:
        return self._track(socket.create_connection(self.upstream, timeout=TIMEOUT))


class HttpFaultProxy(_Proxy):
    """An HTTP/1.1 proxy: one request per connection (it answers ``Connection: close``)."""

    def __init__(self, upstream_url: str, faults: Sequence[str] = ()) -> None:
        parts = urlsplit(upstream_url)
        super().__init__((parts.hostname or HOST, parts.port or 80), faults)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _serve(self, client: socket.socket) -> None:
        try:
            request = _read_request(client)
            if request is None:
                return
            fault = self.next_fault()
            if fault in _STATUS:
                client.sendall(_error_response(*_STATUS[fault]))
            elif fault == "reset":
                _reset(client)
            elif fault == "reset_after":
                self._exchange(request)
                _reset(client)
            else:
                client.sendall(self._exchange(request))
        except OSError:
            pass
        finally:
            self._forget(client)

    def _exchange(self, request: bytes) -> bytes:
        """Send ``request`` upstream (asking it to close), return its whole response."""
        upstream = self._connect_upstream()
        try:
            upstream.sendall(_with_close(request))
            chunks = []
            while chunk := upstream.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            self._forget(upstream)


class TcpFaultProxy(_Proxy):
    """A raw TCP proxy (for gRPC over HTTP/2): faults apply per accepted connection."""

    def __init__(self, upstream: str, faults: Sequence[str] = ()) -> None:
        host, _, port = upstream.rpartition(":")
        super().__init__((host or HOST, int(port)), faults)

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def _serve(self, client: socket.socket) -> None:
        if self.next_fault() == "reset":
            _reset(client)
            self._forget(client)
            return
        try:
            upstream = self._connect_upstream()
        except OSError:
            self._forget(client)
            return
        self._spawn(self._pipe, upstream, client)
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._forget(source)
            self._forget(target)


def _read_request(client: socket.socket) -> bytes | None:
    """One whole HTTP request (head and Content-Length body), or None when the client left."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


def _with_close(request: bytes) -> bytes:
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


def _error_response(code: int, status: str, reason: str) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": code,
                "message": f"Injected by the fault proxy: {status}",
                "errors": [{"reason": reason, "message": status, "domain": "global"}],
                "status": "UNAVAILABLE" if code == 503 else "RESOURCE_EXHAUSTED",
            }
        }
    ).encode()
    head = (
        f"HTTP/1.1 {code} {status}\r\nContent-Type: application/json; charset=UTF-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset by peer'."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
