"""google-auth's transport over the light REST client's connections.

Credentials refresh their tokens with HTTP requests of their own (Google's STS and IAM
credentials for workload identity federation, the OAuth token endpoint for a service-account
key). google-auth ships transports on ``requests`` and ``urllib3``, which cost a cold start
100-200 ms to import; :class:`AuthRequest` sends them through the light client's
:class:`~ddb2bq.bigquery.rest.Connections` instead, on the same keep-alive connections. Imported
only when credentials are used.

>>> credentials.before_request(AuthRequest(Connections(), 60), "GET", url, headers)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.auth import exceptions, transport

from ddb2bq.bigquery.transport import Answer, Transport


class AuthResponse(transport.Response):
    """An :class:`~ddb2bq.bigquery.rest.Answer` as google-auth reads a response."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self._answer.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers, names in lower case."""
        return self._answer.headers

    @property
    def data(self) -> bytes:
        """The body."""
        return self._answer.data


class AuthRequest(transport.Request):
    """A ``google.auth.transport.Request`` over a :class:`~ddb2bq.bigquery.rest.Transport`;
    a request that gets no answer raises google-auth's ``TransportError``."""

    def __init__(self, sender: Transport, timeout: float) -> None:
        self._sender = sender
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> AuthResponse:
        """Send the request; google-auth's signature."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        try:
            answer = self._sender.send(method, url, data, headers or {}, timeout or self._timeout)
        except (ConnectionError, TimeoutError) as exc:
            raise exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
        return AuthResponse(answer)
