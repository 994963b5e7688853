"""HTTP for the light REST client, on the standard library: one keep-alive connection per host.

:class:`Connections` is the real :class:`Transport`: a connection the server closed while idle is
noticed before it is used, and replaced; a network failure raises ``ConnectionError`` or
``TimeoutError``. No request waits past the current deadline
(:func:`~ddb2bq.contract.current_deadline`, a Lambda invocation's), and none is sent once it has
passed (``TimeoutError``). Proxies set in the environment (``HTTPS_PROXY``) are not used.
"""

from __future__ import annotations

import http.client
import select
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from ddb2bq.contract import current_deadline, request_timeout

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True, slots=True)
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


class Connections:
    """Keep-alive HTTP/1.1 connections, one per scheme, host and port; a :class:`Transport`.

    A connection the server closed while idle (it shows as readable: end of file) is dropped
    before a request would be sent on it, so no request is lost on it. ``ssl_context`` defaults
    to the system's trust store, or certifi's bundle when certifi is installed (as requests).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._open: dict[tuple[str, str, int | None], http.client.HTTPConnection] = {}
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
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            connection = self._connection(parts.scheme, parts.hostname or "", parts.port, timeout)
            try:
                connection.request(method, target, body=body, headers=dict(headers))
                response = connection.getresponse()
                data = response.read()
            except TimeoutError as exc:
                connection.close()
                raise TimeoutError(
                    f"{method} {url}: no answer within {round(timeout, 1):g} s."
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise ConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        names = {name.lower(): value for name, value in response.getheaders()}
        if names.get("content-encoding") == "gzip":
            data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
        return Answer(response.status, names, data)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for connection in self._open.values():
                connection.close()
            self._open.clear()

    def _connection(
        self, scheme: str, host: str, port: int | None, timeout: float
    ) -> http.client.HTTPConnection:
        key = (scheme, host, port)
        connection = self._open.get(key)
        if connection is None:
            connection = self._new(scheme, host, port, timeout)
            self._open[key] = connection
        elif _dropped(connection):
            connection.close()  # the next request opens it again
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def _new(
        self, scheme: str, host: str, port: int | None, timeout: float
    ) -> http.client.HTTPConnection:
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=timeout)
        if scheme == "https":
            context = self._context()
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        raise ValueError(f"Cannot send to a {scheme!r} URL: only http and https.")

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            import ssl  # noqa: PLC0415 (not needed for a plain-HTTP emulator)

            self._ssl_context = ssl.create_default_context(cafile=_ca_bundle())
        return self._ssl_context


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """True when an idle connection's socket is readable: the server closed it (or sent
    something unasked); either way it cannot carry the next request."""
    sock = connection.sock
    if sock is None:
        return False
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
