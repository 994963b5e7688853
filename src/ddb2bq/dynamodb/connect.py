"""boto3 clients for ``[source]``, and AWS's errors as sentences that say what to do.

The clients use ``[source] region`` and ``endpoint_url`` (moto locally) and boto3's own
credential chain. :func:`aws_error` turns botocore's exceptions into ddb2bq errors that name the
table, the endpoint or the setting: missing credentials or region and a bad table name are
configuration (:class:`~ddb2bq.exceptions.ConfigError`, exit 2), an endpoint that does not answer
is retryable (:class:`AwsUnavailable`, exit 1).

Under a retry limit (:func:`~ddb2bq.contract.retry_limit`: the command line's
``--retry-deadline``) a client tries each call 3 times at most (botocore's ``standard`` mode:
waits of up to 1 s, then 2 s), each attempt given a third of the limit (5 s at most) to connect,
and says so on each retry, so that an endpoint that cannot be reached is reported within the
limit rather than after minutes. Reading an answer keeps botocore's 60 s timeout (a Scan page
may be slow to come).

>>> dynamodb = dynamodb_client(load_config("ddb2bq.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ddb2bq.config import Config
from ddb2bq.contract import retry_limit
from ddb2bq.exceptions import ConfigError, Ddb2bqError, RetryableError

logger = logging.getLogger(__name__)

RETRY_ATTEMPTS = 3
"""Attempts per call under a retry limit (botocore's ``total_max_attempts``)."""


class AwsUnavailable(RetryableError):  # noqa: N818 (named for what it is, as RetryableError)
    """An AWS endpoint did not answer (network, DNS, a server error): try again later."""


def dynamodb_client(config: Config) -> Any:
    """A boto3 DynamoDB client for ``[source]``."""
    return _client("dynamodb", config)


def streams_client(config: Config) -> Any:
    """A boto3 DynamoDB Streams client for ``[source]``."""
    return _client("dynamodbstreams", config)


def s3_client(config: Config) -> Any:
    """A boto3 S3 client for ``[source]`` (exports; moto serves S3 beside DynamoDB locally)."""
    return _client("s3", config)


def _client(service: str, config: Config) -> Any:
    try:
        import boto3  # noqa: PLC0415 (an optional dependency: the aws extra)
    except ImportError as exc:
        raise ConfigError("Reading DynamoDB needs boto3: pip install 'ddb2bq[aws]'.") from exc
    if not config.source.region:
        raise ConfigError(
            f"No AWS region is set for table {config.source.table!r}: set [source] region "
            "(DDB2BQ_SOURCE_REGION), such as 'eu-west-1'."
        )
    with aws_errors(config, f"making a {service} client"):
        try:
            client = boto3.client(
                service,
                region_name=config.source.region,
                endpoint_url=config.source.endpoint_url,
                **_bounded(retry_limit()),
            )
        except ValueError as exc:
            if type(exc) is not ValueError:  # InvalidRegionError and the like: aws_error's
                raise
            raise ConfigError(  # botocore's "Invalid endpoint: ..."
                f"{exc} (table {config.source.table!r}): check [source] endpoint_url (a URL "
                "such as http://localhost:8000, or none for AWS) and [source] region."
            ) from exc
    if retry_limit() is not None:
        client.meta.events.register(f"needs-retry.{_event_name(client)}", _say_retrying)
    return client


def _bounded(limit: float | None) -> dict[str, Any]:
    """botocore's settings for calls that must end within ``limit`` seconds (none: its own)."""
    if limit is None:
        return {}
    from botocore.config import Config as BotoConfig  # noqa: PLC0415 (with boto3)

    # Only connecting is bounded by the limit: a legitimately slow answer (a Scan page under
    # load) keeps botocore's 60 s read timeout.
    return {
        "config": BotoConfig(
            connect_timeout=max(min(limit / RETRY_ATTEMPTS, 5.0), 1.0),
            retries={"mode": "standard", "total_max_attempts": RETRY_ATTEMPTS},
        )
    }


def _event_name(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


def _say_retrying(
    attempts: int, caught_exception: BaseException | None = None, **kwargs: Any
) -> None:
    """A botocore ``needs-retry`` hook: one log line when botocore will try the call again."""
    response = kwargs.get("response")
    status, code = 0, ""
    if response is not None:
        status = int(response[0].status_code)
        code = str(response[1].get("Error", {}).get("Code", ""))
    transient = caught_exception is not None and is_unreachable(caught_exception)
    transient = transient or status >= 500 or "Throttl" in code or code == "RequestLimitExceeded"
    if not transient or attempts >= RETRY_ATTEMPTS:
        return
    operation = getattr(kwargs.get("operation"), "name", "a call")
    endpoint = getattr(kwargs.get("endpoint"), "host", "AWS")
    why = type(caught_exception).__name__ if caught_exception is not None else code or status
    logger.warning(
        "%s to %s failed (%s); retrying in up to %d s (attempt %d of %d).",
        operation,
        endpoint,
        why,
        2 ** (attempts - 1),
        attempts + 1,
        RETRY_ATTEMPTS,
    )


@contextmanager
def aws_errors(config: Config, doing: str) -> Iterator[None]:
    """Raise botocore's errors inside the block as ddb2bq errors (see :func:`aws_error`)."""
    try:
        yield
    except Ddb2bqError:
        raise
    except Exception as exc:
        translated = aws_error(exc, config, doing)
        if translated is None:
            raise
        raise translated from exc


def aws_error(exc: BaseException, config: Config, doing: str) -> Ddb2bqError | None:
    """The ddb2bq error for botocore's ``exc`` met while ``doing`` something; None when it is
    not one of AWS's.

    >>> from ddb2bq.config import SourceConfig
    >>> class NoCredentialsError(Exception): ...
    >>> print(aws_error(NoCredentialsError(), Config(SourceConfig(table="orders")), "reading"))
    No AWS credentials were found while reading (table 'orders'): set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an IAM role is attached.
    """
    name = type(exc).__name__
    where = f"while {doing} (table {config.source.table!r})"
    endpoint = config.source.endpoint_url or f"the AWS endpoint of region {config.source.region!r}"
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return ConfigError(
            f"No AWS credentials were found {where}: set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where an IAM role is attached."
        )
    if name == "NoRegionError":
        return ConfigError(f"No AWS region is set {where}: set [source] region (or AWS_REGION).")
    if name in ("InvalidRegionError", "InvalidEndpointConfigurationError"):
        return ConfigError(f"{exc} ({where}): check [source] region and endpoint_url.")
    if name == "ParamValidationError":
        return ConfigError(f"AWS refused the request {where}: {exc} Check [source] table.")
    if is_unreachable(exc) and _from_botocore(exc):
        return AwsUnavailable(
            f"{endpoint} cannot be reached {where}: {exc}. Check [source] endpoint_url and the "
            "network, then try again."
        )
    return _client_error(exc, where)


def _from_botocore(exc: BaseException) -> bool:
    """True for botocore's own exceptions (a plain ConnectionError may be BigQuery's)."""
    return type(exc).__module__.startswith(("botocore", "boto3", "urllib3"))


def _client_error(exc: BaseException, where: str) -> Ddb2bqError | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = error_code(exc)
    message = str(response.get("Error", {}).get("Message", ""))
    if code == "ResourceNotFoundException":
        return ConfigError(f"{message or 'Not found'} {where}: check [source] table and region.")
    if code in ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredToken"):
        return ConfigError(f"AWS refused the credentials {where} ({code}): renew or fix them.")
    if code in ("AccessDeniedException", "AccessDenied"):
        return ConfigError(f"AWS denied access {where}: {message}")
    if code == "ValidationException":
        return ConfigError(f"AWS refused the request {where}: {message} Check [source] table.")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if isinstance(status, int) and (status >= 500 or code.endswith("Throttling")):
        return AwsUnavailable(f"AWS answered {code or status} {where}: {message}; try again.")
    return Ddb2bqError(f"AWS refused the call {where}: {code}: {message}")


def error_code(exc: BaseException) -> str:
    """The service's error code of a botocore ``ClientError`` (``""`` for anything else).

    >>> class Refused(Exception):
    ...     response = {"Error": {"Code": "NoSuchBucket"}}
    >>> error_code(Refused()), error_code(ValueError())
    ('NoSuchBucket', '')
    """
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_unreachable(exc: BaseException) -> bool:
    """A connection that failed or timed out (botocore's or the socket's): worth another try."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & _UNREACHABLE)


_UNREACHABLE = frozenset(
    ("EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError", "ReadTimeoutError")
)
