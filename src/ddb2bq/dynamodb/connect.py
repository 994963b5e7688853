"""boto3 clients for ``[source]``, and AWS's errors as sentences that say what to do.

The clients use ``[source] region`` and ``endpoint_url`` (moto locally) and boto3's own
credential chain. :func:`aws_error` turns botocore's exceptions into ddb2bq errors that name the
table, the endpoint or the setting: missing credentials or region and a bad table name are
configuration (:class:`~ddb2bq.exceptions.ConfigError`, exit 2), an endpoint that does not answer
is retryable (:class:`AwsUnavailable`, exit 1).

>>> dynamodb = dynamodb_client(load_config("ddb2bq.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError, Ddb2bqError, RetryableError


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
    with aws_errors(config, f"making a {service} client"):
        return boto3.client(
            service, region_name=config.source.region, endpoint_url=config.source.endpoint_url
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
    if is_unreachable(exc):
        return AwsUnavailable(
            f"{endpoint} cannot be reached {where}: {exc}. Check [source] endpoint_url and the "
            "network, then try again."
        )
    return _client_error(exc, where)


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
