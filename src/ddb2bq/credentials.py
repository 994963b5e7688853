"""Google credentials for writing to BigQuery from AWS, in order of preference.

================================  =========================================================
``[google] credentials``          where the credentials come from
================================  =========================================================
``workload_identity``             workload identity federation: an ``external_account``
                                  configuration with an AWS source (``workload_identity_config``,
                                  JSON text or a file path). Keyless: Google trusts the Lambda's
                                  AWS role; nothing secret is stored anywhere. Recommended.
``secret``                        a service-account key (JSON) read from AWS Secrets Manager
                                  (``secret_id``) once, at the first write, and kept for the
                                  container's life. The key's value is never logged and never
                                  put in an exception message.
``default``                       Google application default credentials (``gcloud auth``,
                                  ``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server).
``anonymous``                     no credentials: only for local emulators.
``auto`` (the default)            the first of the above whose setting is present:
                                  ``workload_identity_config``, then ``secret_id``, then default.
================================  =========================================================

A key is never read from the package or from an environment variable. google-auth is imported
only when credentials are first needed, so importing this module costs nothing at cold start.

The Secrets Manager client's region is the secret's own when ``secret_id`` is an ARN
(``arn:aws:secretsmanager:eu-west-1:…``), else the provider's ``region`` (the command line gives
``[source] region``), else boto3's (``AWS_REGION``: in Lambda, the function's region).

Example::

    provider = CredentialsProvider(config.google, region=config.source.region)
    credentials = provider.get()   # the same object on every later call
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ddb2bq.config import Config, GoogleConfig
from ddb2bq.exceptions import ConfigError, RetryableError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

logger = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"  # noqa: S105
_SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")


class SecretsClient(Protocol):
    """The part of boto3's ``secretsmanager`` client this module uses."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]:  # noqa: N803
        """Return the secret's current value (``SecretString`` or ``SecretBinary``)."""
        ...


SecretsClientFactory = Callable[[str | None], SecretsClient]
"""Makes the Secrets Manager client for a region (None: boto3's default)."""


class CredentialsProvider:
    """Resolves the Google credentials once and keeps them for the container's life.

    Hold one provider per container (the Lambda handler's cold-start state); ``get`` resolves
    on first use, so a cold start that never writes never calls Secrets Manager.
    ``secrets_client`` (or ``secrets_client_factory``, called with the region only when the
    secret path is taken) is boto3's ``secretsmanager`` client; ``region`` is the region of a
    secret named without its ARN (None: boto3's default).
    """

    def __init__(
        self,
        config: GoogleConfig,
        *,
        region: str | None = None,
        secrets_client: SecretsClient | None = None,
        secrets_client_factory: SecretsClientFactory | None = None,
    ) -> None:
        self._config = config
        self._region = region or None
        self._secrets_client = secrets_client
        self._secrets_client_factory = secrets_client_factory or _boto3_secrets_client
        self._credentials: Credentials | None = None

    @property
    def mode(self) -> str:
        """The path taken: ``workload_identity``, ``secret``, ``default`` or ``anonymous``."""
        return resolve_mode(self._config)

    def get(self) -> Credentials:
        """The credentials, resolved on the first call and the same object afterwards."""
        if self._credentials is None:
            mode = self.mode
            self._credentials = self._load(mode)
            logger.info("Google credentials loaded.", extra={"credentials": mode})
        return self._credentials

    def _load(self, mode: str) -> Credentials:
        if mode == "workload_identity":
            return workload_identity_credentials(self._config.workload_identity_config)
        if mode == "secret":
            secret_id = self._config.secret_id
            client = self._secrets_client
            if client is None:
                region = secret_region(secret_id) or self._region
                client = _secrets_call(secret_id, lambda: self._secrets_client_factory(region))
            return secret_credentials(client, secret_id)
        if mode == "anonymous":
            return anonymous_credentials()
        return default_credentials()


def resolve_mode(config: GoogleConfig) -> str:
    """The credentials path ``config`` selects; ``auto`` takes the first one configured.

    >>> resolve_mode(GoogleConfig(secret_id="ddb2bq/google-key"))
    'secret'
    """
    mode = config.credentials
    if mode == "auto":
        if config.workload_identity_config:
            return "workload_identity"
        return "secret" if config.secret_id else "default"
    if mode == "workload_identity" and not config.workload_identity_config:
        raise ConfigError(
            "[google] credentials = workload_identity needs [google] workload_identity_config: "
            "the external_account JSON (or its path) that `gcloud iam workload-identity-pools "
            "create-cred-config --aws` writes."
        )
    if mode == "secret" and not config.secret_id:
        raise ConfigError(
            "[google] credentials = secret needs [google] secret_id: the Secrets Manager name "
            "or ARN of the secret holding the service-account key JSON."
        )
    return mode


def workload_identity_credentials(config_text_or_path: str) -> Credentials:
    """Credentials from an ``external_account`` configuration with an AWS source.

    ``config_text_or_path`` is the configuration's JSON text or the path of a file holding it.
    google-auth signs a GetCallerIdentity request with the function's own AWS credentials (the
    ``AWS_*`` variables Lambda sets) and exchanges it at Google's STS; no network is used here.

    >>> creds = workload_identity_credentials('{"type": "external_account", ...}')  # doctest: +SKIP
    """
    info = _external_account_info(config_text_or_path)
    from google.auth import aws  # noqa: PLC0415 (lazy: cold start)

    try:
        credentials: Credentials = aws.Credentials.from_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES)
        )
    except ValueError as exc:
        raise ConfigError(
            f"[google] workload_identity_config is not a usable AWS external_account "
            f"configuration: {exc}"
        ) from exc
    return credentials


def _external_account_info(config_text_or_path: str) -> dict[str, Any]:
    text = config_text_or_path.strip()
    origin = "[google] workload_identity_config"
    if not text.startswith("{"):
        origin = f"{origin} file {text!r}"
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{origin} cannot be read: {exc.strerror}.") from exc
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin} is not JSON: {exc}.") from exc
    if not isinstance(info, dict) or info.get("type") != "external_account":
        raise ConfigError(f'{origin} is not an "external_account" credentials configuration.')
    if info.get("subject_token_type") != AWS_SUBJECT_TOKEN_TYPE:
        raise ConfigError(
            f"{origin} does not use an AWS source (subject_token_type "
            f"{AWS_SUBJECT_TOKEN_TYPE!r}); create it with `gcloud iam workload-identity-pools "
            "create-cred-config ... --aws`."
        )
    return info


def secret_credentials(client: SecretsClient, secret_id: str) -> Credentials:
    """Credentials from a service-account key JSON held in AWS Secrets Manager.

    Errors name the secret and what is wrong with it, never its value; the parse errors of the
    value are not chained (their text or attributes could quote the key).
    """
    info = _secret_json(client, secret_id)
    from google.oauth2 import service_account  # noqa: PLC0415 (lazy: cold start)

    try:
        credentials: Credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES)
        )
    except (ValueError, TypeError, KeyError):
        pass  # the error's text may quote the key: raise below, outside this handler
    else:
        return credentials
    raise ConfigError(
        f"The secret {secret_id!r} holds a service-account key that google-auth cannot load "
        "(the private key is malformed); create a new key and store its JSON in the secret."
    )


def _secret_json(client: SecretsClient, secret_id: str) -> dict[str, Any]:
    value = _secret_value(client, secret_id)
    info = _parse_json_quietly(value)
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(
            f"The secret {secret_id!r} does not hold a service-account key JSON "
            '(an object with "type": "service_account"); store the key file\'s whole text.'
        )
    missing = [name for name in _SERVICE_ACCOUNT_FIELDS if not info.get(name)]
    if missing:
        raise ConfigError(
            f"The service-account key in secret {secret_id!r} lacks {', '.join(missing)}; "
            "store the key file's whole text."
        )
    return info


def _parse_json_quietly(value: str | bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return None  # JSONDecodeError keeps the whole text in .doc: never let it travel


def provider_for(
    config: Config, *, secrets_client_factory: SecretsClientFactory | None = None
) -> CredentialsProvider:
    """The command line's provider of ``config``'s [google] credentials, reading a Secrets
    Manager secret in ``[source] region`` unless the secret's ARN names its own. (The Lambda
    function reads it in its own region, ``AWS_REGION``, as boto3 does.)"""
    return CredentialsProvider(
        config.google,
        region=config.source.region or None,
        secrets_client_factory=secrets_client_factory,
    )


def secret_region(secret_id: str) -> str | None:
    """The region in a secret's ARN; None for a secret named by its name.

    >>> secret_region("arn:aws:secretsmanager:eu-west-1:123456789012:secret:ddb2bq/key-AbCdEf")
    'eu-west-1'
    >>> secret_region("ddb2bq/key") is None
    True
    """
    parts = secret_id.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "secretsmanager" and parts[3]:
        return parts[3]
    return None


def _secret_value(client: SecretsClient, secret_id: str) -> str | bytes:
    response = _secrets_call(secret_id, lambda: client.get_secret_value(SecretId=secret_id))
    value = response.get("SecretString")
    if value is None:
        value = response.get("SecretBinary")
    if not isinstance(value, str | bytes):
        raise ConfigError(f"The secret {secret_id!r} has no value (SecretString or SecretBinary).")
    return value


_TERMINAL_SECRET_CODES = frozenset(
    ("ResourceNotFoundException", "AccessDeniedException", "InvalidRequestException",
     "InvalidParameterException", "DecryptionFailure")
)  # fmt: skip


T = TypeVar("T")


def _secrets_call(secret_id: str, call: Callable[[], T]) -> T:
    """``call()``, botocore's errors raised as ddb2bq errors naming the secret."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 (lazy: cold start)

    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        raise _secrets_error(secret_id, exc) from exc


_NO_REGION = (
    "no AWS region is known for it: give [google] secret_id as the secret's ARN, or set "
    "[source] region or AWS_REGION"
)
_BOTOCORE_CONFIG_ERRORS = {
    "NoRegionError": _NO_REGION,
    "NoCredentialsError": "no AWS credentials were found: set AWS_PROFILE or AWS_ACCESS_KEY_ID "
    "and AWS_SECRET_ACCESS_KEY, or run where an IAM role is attached",
    "PartialCredentialsError": "the AWS credentials are incomplete: set both AWS_ACCESS_KEY_ID "
    "and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
    "InvalidRegionError": "its region is not a valid AWS region name: check [source] region "
    "and [google] secret_id",
}


def _secrets_error(secret_id: str, exc: Exception) -> Exception:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""
    problem = _BOTOCORE_CONFIG_ERRORS.get(type(exc).__name__)
    if problem is not None:
        return ConfigError(f"The secret {secret_id!r} cannot be read: {problem}.")
    if code in _TERMINAL_SECRET_CODES:
        return ConfigError(
            f"The secret {secret_id!r} cannot be read ({code}); check its name and that the "
            "function's role may call secretsmanager:GetSecretValue on it."
        )
    return RetryableError(
        f"Reading the secret {secret_id!r} failed ({code or type(exc).__name__}); try again later."
    )


def default_credentials() -> Credentials:
    """Google application default credentials (``google.auth.default``)."""
    import google.auth  # noqa: PLC0415 (lazy: cold start)
    from google.auth.exceptions import DefaultCredentialsError  # noqa: PLC0415 (lazy: cold start)

    try:
        credentials, _project = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise ConfigError(
            "No Google credentials found: set [google] workload_identity_config (recommended) "
            f"or [google] secret_id, or provide application default credentials ({exc})."
        ) from exc
    return credentials


def anonymous_credentials() -> Credentials:
    """No credentials, for the local BigQuery emulator."""
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415 (lazy: cold start)

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def _boto3_secrets_client(region: str | None) -> SecretsClient:
    import boto3  # noqa: PLC0415 (lazy: cold start)

    client: SecretsClient = boto3.client("secretsmanager", region_name=region)
    return client
