"""HTTP/1.1 for the light REST client, on sockets: one keep-alive connection per host.

:class:`Connections` is the real :class:`Transport`: a connection the server closed while idle is
noticed before it is used, and replaced; a network failure, or an answer that is not HTTP/1.x,
raises ``ConnectionError``, no answer in time ``TimeoutError``. No request waits past the current
deadline (:func:`~ddb2bq.contract.current_deadline`, a Lambda invocation's), and none is sent once
it has passed (``TimeoutError``). Proxies set in the environment (``HTTPS_PROXY``) are not used.

It speaks the part of HTTP/1.1 the client needs (a request with a body of known length; an answer
with ``Content-Length``, chunked, or read to the end of the connection; ``1xx`` answers skipped),
on ``socket`` (and ``ssl`` for https) alone: ``http.client`` imports the ``email`` package to read
headers (about 10 ms of a cold start), and ``ssl`` even for a plain-HTTP endpoint.
"""

from __future__ import annotations

import select
import socket
import threading
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import urlsplit

from ddb2bq.classes import data_class
from ddb2bq.contract import current_deadline, request_timeout

if TYPE_CHECKING:
    import ssl

MAX_LINE = 65_536
"""Longest status or header line taken (as ``http.client``)."""
MAX_HEADERS = 100
"""Most header lines taken in one answer (as ``http.client``)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


@data_class(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, headers (names in lower case), body (decompressed)."""

    status: int
    headers: Mapping[str, str]
    data: bytes


class Transport(Protocol):
    """Sends one HTTP request and returns the answer (:class:`Connections` is the real one)."""

    def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> Answer:
        """Send the request; raise ConnectionError or TimeoutError when no answer comes."""
        ...

    def close(self) -> None:
        """Close what is open."""
        ...


class BadAnswerError(Exception):
    """What the server sent is not an HTTP/1.x answer (or ended before it was whole)."""


class _Connection:
    """One open socket and its buffered reader."""

    __slots__ = ("reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Connections:
    """Keep-alive HTTP/1.1 connections, one per scheme, host and port; a :class:`Transport`.

    A connection the server closed while idle (it shows as readable: end of file) is dropped
    before a request would be sent on it, so no request is lost on it. ``ssl_context`` defaults
    to the system's trust store, or certifi's bundle when certifi is installed (as requests).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._open: dict[tuple[str, str, int], _Connection] = {}
        self._lock = threading.Lock()
        self._ssl_context = ssl_context

    def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> Answer:
        """Send one request and read the whole answer (``timeout`` cut to the deadline)."""
        deadline = current_deadline()
        if deadline is not None and deadline.expired:
            raise TimeoutError(f"{method} {url}: not sent: {deadline.why} has passed.")
        timeout = request_timeout(timeout)
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"Cannot send to a {scheme!r} URL: only http and https.")
        port = parts.port or _DEFAULT_PORTS[scheme]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = _request(method, target, _host_header(host, port, scheme), body, headers)
        key = (scheme, host, port)
        with self._lock:
            try:
                connection = self._connection(key, timeout)
                connection.sock.sendall(request)
                status, names, data, keep = _answer(connection.reader, method)
            except TimeoutError as exc:
                self._drop(key)
                raise TimeoutError(
                    f"{method} {url}: no answer within {round(timeout, 1):g} s."
                ) from exc
            except (OSError, BadAnswerError) as exc:
                self._drop(key)
                raise ConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            if not keep:
                self._drop(key)
        if names.get("content-encoding") == "gzip":
            data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
        return Answer(status, names, data)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for connection in self._open.values():
                connection.close()
            self._open.clear()

    def _connection(self, key: tuple[str, str, int], timeout: float) -> _Connection:
        connection = self._open.get(key)
        if connection is not None and _dropped(connection.sock):
            self._drop(key)
            connection = None
        if connection is None:
            scheme, host, port = key
            sock = socket.create_connection((host, port), timeout=timeout)
            if scheme == "https":
                try:
                    sock = self._context().wrap_socket(sock, server_hostname=host)
                except BaseException:
                    sock.close()
                    raise
            connection = self._open[key] = _Connection(sock)
        connection.sock.settimeout(timeout)
        return connection

    def _drop(self, key: tuple[str, str, int]) -> None:
        connection = self._open.pop(key, None)
        if connection is not None:
            connection.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            import ssl  # noqa: PLC0415 (not needed for a plain-HTTP emulator)

            self._ssl_context = ssl.create_default_context(cafile=_ca_bundle())
        return self._ssl_context


def _host_header(host: str, port: int, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host  # an IPv6 address
    return name if port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"


def _request(
    method: str, target: str, host: str, body: bytes | None, headers: Mapping[str, str]
) -> bytes:
    """The request's bytes: head and body in one piece (one send: no Nagle delay between them)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    given = {name.lower() for name in headers}
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    if "content-length" not in given and (body is not None or method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body or b'')}")
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            raise ValueError(
                f"Cannot send the header {name!r}: a name or value holds a line break."
            )
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


def _answer(reader: BinaryIO, method: str) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body and whether the connection stays open, read from ``reader``."""
    while True:
        version, status = _status_line(reader)
        names = _headers(reader)
        if not 100 <= status < 200 or status == 101:
            break  # 100 Continue and other interim answers come before the real one
    tokens = {token.strip().lower() for token in names.get("connection", "").split(",")}
    keep = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    if method == "HEAD" or status in (101, 204, 304):
        return status, names, b"", keep and status != 101
    if "chunked" in names.get("transfer-encoding", "").lower():
        return status, names, _chunked(reader), keep
    length = names.get("content-length")
    if length is None:
        return status, names, reader.read(), False  # to the end of the connection
    if not length.isdigit():
        raise BadAnswerError(f"the answer's Content-Length {length!r} is not a number")
    return status, names, _exactly(reader, int(length)), keep


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadAnswerError(f"a line of the answer is longer than {MAX_LINE} bytes")
    return line


def _status_line(reader: BinaryIO) -> tuple[str, int]:
    line = _line(reader)
    if not line:
        raise BadAnswerError("the server closed the connection without an answer")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise BadAnswerError(
            f"the answer does not start with an HTTP/1.x status line: {line[:80]!r}"
        )
    return version, int(code)


def _headers(reader: BinaryIO) -> dict[str, str]:
    names: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader)
        if line in (b"\r\n", b"\n"):
            return names
        if not line:
            raise BadAnswerError("the answer ended inside its headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise BadAnswerError(f"the answer holds a header line without a colon: {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        names[name] = f"{names[name]}, {value}" if name in names else value
    raise BadAnswerError(f"the answer holds more than {MAX_HEADERS} headers")


def _exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise BadAnswerError(f"the answer ended after {len(data)} of its {size} bytes")
    return data


def _chunked(reader: BinaryIO) -> bytes:
    parts = []
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise BadAnswerError(f"the answer holds a bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        parts.append(_exactly(reader, size))
        if _line(reader) not in (b"\r\n", b"\n"):
            raise BadAnswerError("a chunk of the answer does not end with a line break")
    while _line(reader) not in (b"\r\n", b"\n", b""):  # trailers: not used
        pass
    return b"".join(parts)


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection's socket is readable: the server closed it (or sent
    something unasked); either way it cannot carry the next request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _ca_bundle() -> str | None:
    try:
        import certifi  # noqa: PLC0415 (optional: the system's trust store otherwise)
    except ImportError:
        return None
    return str(certifi.where())
