"""BigQuery errors: the light REST client's HTTP error, and which errors are worth another try.

:func:`classify` is the one place that decides whether an error from the BigQuery REST clients
(``google.api_core`` exceptions and ``requests``; the light client's
:class:`BigQueryHTTPError`), the Storage Write API (gRPC) or the network is
retryable:

=====================================================  =========
error                                                  retryable
=====================================================  =========
HTTP 429, 500, 502, 503, 504                           yes
reason ``rateLimitExceeded``, ``backendError``,        yes
``internalError``, ``badGateway`` (any status)
gRPC UNAVAILABLE, RESOURCE_EXHAUSTED,                  yes
DEADLINE_EXCEEDED, INTERNAL
timeouts, connection refused or reset, cut streams     yes
:class:`~ddb2bq.exceptions.RetryableError`             yes
anything else: 400 invalid, 404 notFound (table        no
dropped), 403 accessDenied, INVALID_ARGUMENT,
NOT_FOUND, :class:`~ddb2bq.exceptions.TerminalError`
=====================================================  =========

Classifying imports nothing: an error of ``google.api_core``, ``requests`` or ``grpc`` can only
exist once its library was imported, so those classes are looked up in ``sys.modules``, and the
Lambda's light ``insertAll`` path never pays for the Google client libraries.

:func:`bigquery_error` turns the Google libraries' exceptions that reach the command line into
one sentence naming the endpoint, the project or the setting: missing or refused credentials and
a missing dataset are configuration (:class:`~ddb2bq.exceptions.ConfigError`, exit 2), an
endpoint that does not answer is :class:`BigQueryUnavailable` (exit 1).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ddb2bq.exceptions import ConfigError, Ddb2bqError, RetryableError, TerminalError

if TYPE_CHECKING:
    from ddb2bq.bigquery.transport import Answer

_MAX_ERROR_TEXT = 1000


class BigQueryHTTPError(Ddb2bqError):
    """BigQuery answered with an HTTP error status; :func:`classify` says whether retrying helps
    (429, 5xx and BigQuery's transient reasons do).

    ``code`` is the HTTP status, ``errors`` BigQuery's error list (each with a ``reason`` such
    as ``notFound``, ``invalid``, ``rateLimitExceeded``, ``backendError``) and ``status`` the
    canonical status name (``NOT_FOUND``). The text reads like the full client's exceptions:
    ``404 GET https://...: Not found: Table p:d.t``.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        errors: Sequence[Mapping[str, Any]] = (),
        status: str = "",
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.errors = [dict(e) for e in errors]
        self.status = status
        self.method = method
        self.url = url

    @property
    def reasons(self) -> list[str]:
        """The ``reason`` of each of BigQuery's errors."""
        return [str(e.get("reason", "")) for e in self.errors]

    def __str__(self) -> str:
        where = f"{self.method} {self.url}: " if self.method else ""
        return f"{self.code} {where}{self.message}"


def error_from_answer(answer: Answer, method: str, url: str) -> BigQueryHTTPError:
    """The error of a non-2xx answer, read from BigQuery's ``{"error": {...}}`` body.

    >>> body = b'{"error": {"code": 404, "message": "Not found: Table p:d.t", "status": "NOT_FOUND",'
    >>> body += b' "errors": [{"reason": "notFound", "message": "Not found: Table p:d.t"}]}}'
    >>> error = error_from_answer(Answer(404, {}, body), "GET", "https://x/t")
    >>> error.code, error.reasons, str(error)
    (404, ['notFound'], '404 GET https://x/t: Not found: Table p:d.t')
    """
    try:
        payload = orjson.loads(answer.data)
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        text = answer.data.decode("utf-8", "replace").strip()[:_MAX_ERROR_TEXT]
        error = {"message": text or "unknown error"}
    errors = [e for e in error.get("errors") or () if isinstance(e, dict)]
    return BigQueryHTTPError(
        answer.status,
        str(error.get("message") or "unknown error"),
        errors=errors,
        status=str(error.get("status") or ""),
        method=method,
        url=url,
    )


RETRYABLE_REASONS = frozenset(("rateLimitExceeded", "backendError", "internalError", "badGateway"))
"""BigQuery error reasons that a later identical request may not meet (as BigQuery's own client)."""

RETRYABLE_GRPC_CODES = frozenset(
    ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL")
)
"""gRPC status code names worth another try."""

RETRYABLE_STATUS = frozenset((429, 500, 502, 503, 504))
"""HTTP statuses worth another try (the full client's exception classes for them, below)."""

_RETRYABLE_API = (
    "TooManyRequests",
    "InternalServerError",
    "BadGateway",
    "ServiceUnavailable",
    "GatewayTimeout",
    "DeadlineExceeded",
    "ResourceExhausted",
)
_RETRYABLE_REQUESTS = ("ConnectionError", "Timeout", "ChunkedEncodingError")


def classify(exc: BaseException) -> bool:
    """True when the request that raised ``exc`` may succeed if sent again later.

    >>> classify(BigQueryHTTPError(503, "try later")), classify(BigQueryHTTPError(404, "gone"))
    (True, False)
    """
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, TerminalError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, *_classes("requests.exceptions"))):
        return True
    if isinstance(exc, BigQueryHTTPError):
        return exc.code in RETRYABLE_STATUS or bool(RETRYABLE_REASONS & set(exc.reasons))
    api = sys.modules.get("google.api_core.exceptions")
    if api is not None:
        if isinstance(exc, _classes("google.api_core.exceptions")):
            return True
        if isinstance(exc, api.GoogleAPICallError):
            return bool(RETRYABLE_REASONS & set(_reasons(exc)))
    code = _grpc_code_name(exc)
    if code is not None:
        return code in RETRYABLE_GRPC_CODES
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and classify(cause)


def splittable(exc: BaseException) -> bool:
    """True when a terminal request error may come from one row of it (HTTP 400, gRPC
    INVALID_ARGUMENT): sending the halves separately isolates the row.

    >>> splittable(BigQueryHTTPError(400, "Could not decode string as base64"))
    True
    >>> splittable(BigQueryHTTPError(404, "Not found: Table p:d.t"))
    False
    """
    if isinstance(exc, BigQueryHTTPError):
        return exc.code == 400 and not classify(exc)
    api = sys.modules.get("google.api_core.exceptions")
    return api is not None and isinstance(exc, api.BadRequest) and not classify(exc)


def _classes(module: str) -> tuple[type[BaseException], ...]:
    """The retryable exception classes of ``module`` when it is imported, else none."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return ()
    names = _RETRYABLE_API if module.startswith("google") else _RETRYABLE_REQUESTS
    return tuple(getattr(loaded, name) for name in names)


def _reasons(exc: Any) -> list[str]:
    return [str(e.get("reason", "")) for e in exc.errors if isinstance(e, dict)]


def _grpc_code_name(exc: BaseException) -> str | None:
    """The status code name of a raw ``grpc.RpcError`` (one the API core did not wrap)."""
    code = getattr(exc, "code", None)
    if not callable(code) or not type(exc).__module__.startswith("grpc"):
        return None
    value = code()
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else None


class BigQueryUnavailable(RetryableError):  # noqa: N818 (named for what it is, as RetryableError)
    """BigQuery (or Google's token service) did not answer: try again later."""


def bigquery_error(exc: BaseException, *, endpoint: str, project: str) -> Ddb2bqError | None:
    """The ddb2bq error for an exception of the Google libraries (``google.api_core``,
    ``google.auth``, ``requests``, ``grpc``) met talking to BigQuery at ``endpoint`` for
    ``project``; None when ``exc`` is none of theirs.

    >>> print(bigquery_error(BigQueryHTTPError(404, "Not found: Dataset p:d"), endpoint="e", project="p"))
    BigQuery has no such table or dataset in project 'p': 404 Not found: Dataset p:d. Check [target] project and dataset, or run `ddb2bq init`.
    """
    where = f"project {project!r}"
    auth = _auth_error(exc, where)
    if auth is not None:
        return auth
    cause = (
        getattr(exc, "cause", None)
        if _is(exc, "google.api_core.exceptions", "RetryError")
        else None
    )
    if cause is not None or _unreachable(exc):
        last = cause if isinstance(cause, BaseException) else exc
        return BigQueryUnavailable(
            f"BigQuery at {endpoint} did not answer ({where}): {brief(last)}. Check "
            "[target] endpoint and the network (or Google's status page), then try again."
        )
    code = _status_code(exc)
    if code is None:
        return None
    message = f"{code} {getattr(exc, 'message', exc)}"
    if code in (401, 403):
        return ConfigError(
            f"BigQuery refused access to {where}: {message}. Give the credentials of [google] "
            "the BigQuery Data Editor and Job User roles on it."
        )
    if code == 404:
        return ConfigError(
            f"BigQuery has no such table or dataset in {where}: {message}. Check [target] "
            "project and dataset, or run `ddb2bq init`."
        )
    if classify(exc):
        return BigQueryUnavailable(f"BigQuery answered {message} ({where}); try again later.")
    return TerminalError(f"BigQuery refused the call ({where}): {message}")


def _auth_error(exc: BaseException, where: str) -> Ddb2bqError | None:
    module = "google.auth.exceptions"
    if _is(exc, module, "DefaultCredentialsError"):
        return ConfigError(
            f"No Google credentials were found for {where}: set [google] "
            "workload_identity_config (recommended) or [google] secret_id, or provide "
            "application default credentials (`gcloud auth application-default login`, or "
            "GOOGLE_APPLICATION_CREDENTIALS)."
        )
    if _is(exc, module, "TransportError"):
        return BigQueryUnavailable(
            f"Google's token service cannot be reached for {where}: {brief(exc)}. Check the "
            "network, then try again."
        )
    if _is(exc, module, "RefreshError"):
        return ConfigError(
            f"Google refused the credentials of [google] for {where} ({type(exc).__name__}); "
            "check [google] credentials and that the key or the workload identity pool is "
            "still valid."
        )
    return None


def _is(exc: BaseException, module: str, name: str) -> bool:
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(exc, cls)


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, _classes("requests.exceptions")) or _grpc_code_name(exc) == "UNAVAILABLE"


def _status_code(exc: BaseException) -> int | None:
    if isinstance(exc, BigQueryHTTPError):
        return exc.code
    api = sys.modules.get("google.api_core.exceptions")
    if api is not None and isinstance(exc, api.GoogleAPICallError):
        code = exc.code
        return code if isinstance(code, int) else 500
    return None


def brief(exc: BaseException, limit: int = 300) -> str:
    """``ClassName: message`` of ``exc``, cut to ``limit`` characters (for one line).

    >>> brief(TimeoutError("no answer within 30 s"))
    'TimeoutError: no answer within 30 s'
    """
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
