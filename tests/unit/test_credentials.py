"""Google credentials: workload identity federation, a Secrets Manager key, default credentials.

No network: google-auth objects are built from real-looking configurations and a real RSA key
generated here; Secrets Manager is a fake speaking boto3's interface.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import aws
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account

from ddb2bq.config import GoogleConfig, load_config
from ddb2bq.credentials import (
    CredentialsProvider,
    provider_for,
    resolve_mode,
    workload_identity_credentials,
)
from ddb2bq.exceptions import ConfigError, RetryableError

SECRET_ID = "ddb2bq/google-writer-key"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/aws-pool/providers/aws"
WRITER = "ddb2bq-writer@analytics-prod.iam.gserviceaccount.com"

# As `gcloud iam workload-identity-pools create-cred-config ... --aws` writes it.
AWS_EXTERNAL_ACCOUNT = {
    "universe_domain": "googleapis.com",
    "type": "external_account",
    "audience": f"//iam.googleapis.com/{POOL}",
    "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
    "token_url": "https://sts.googleapis.com/v1/token",
    "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/"
    f"serviceAccounts/{WRITER}:generateAccessToken",
    "credential_source": {
        "environment_id": "aws1",
        "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
        "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        "regional_cred_verification_url": "https://sts.{region}.amazonaws.com"
        "?Action=GetCallerIdentity&Version=2011-06-15",
    },
}


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def key_json(private_key_pem: str) -> dict[str, str]:
    """A service-account key file's content, as the console downloads it."""
    return {
        "type": "service_account",
        "project_id": "analytics-prod",
        "private_key_id": "0f3c1e5d7b9a2c4e6f8a0b1c3d5e7f9a1b2c3d4e",
        "private_key": private_key_pem,
        "client_email": WRITER,
        "client_id": "104285873510982734561",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


class FakeSecretsManager:
    """Speaks boto3 ``secretsmanager.get_secret_value``; counts calls."""

    def __init__(self, secrets: Mapping[str, str], error_code: str | None = None) -> None:
        self.secrets = dict(secrets)
        self.error_code = error_code
        self.calls: list[str] = []

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:
        self.calls.append(SecretId)
        if self.error_code is not None:
            error = {"Error": {"Code": self.error_code, "Message": "denied"}}
            raise ClientError(error, "GetSecretValue")  # type: ignore[arg-type]
        return {
            "ARN": f"arn:aws:secretsmanager:::secret:{SecretId}",
            "SecretString": self.secrets[SecretId],
        }


def _key_material(pem: str) -> list[str]:
    """Pieces of the private key that must never appear in a log or an error."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [body[1], body[len(body) // 2], body[-2]]


# --- choosing the path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (GoogleConfig(), "default"),
        (GoogleConfig(secret_id=SECRET_ID), "secret"),
        (
            GoogleConfig(workload_identity_config="/etc/wif.json", secret_id=SECRET_ID),
            "workload_identity",
        ),
        (GoogleConfig(credentials="default", secret_id=SECRET_ID), "default"),
        (GoogleConfig(credentials="anonymous"), "anonymous"),
    ],
)
def test_auto_prefers_workload_identity_then_secret_then_default(
    config: GoogleConfig, expected: str
) -> None:
    # GIVEN a [google] section  WHEN resolved  THEN the most preferred configured path wins
    assert resolve_mode(config) == expected


def test_an_explicit_path_without_its_setting_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="secret_id"):
        resolve_mode(GoogleConfig(credentials="secret"))
    with pytest.raises(ConfigError, match="workload_identity_config"):
        resolve_mode(GoogleConfig(credentials="workload_identity"))


def test_the_google_section_comes_from_the_environment() -> None:
    config = load_config(
        environ={"DDB2BQ_GOOGLE_CREDENTIALS": "secret", "DDB2BQ_GOOGLE_SECRET_ID": SECRET_ID}
    )
    assert config.google == GoogleConfig(credentials="secret", secret_id=SECRET_ID)
    with pytest.raises(ConfigError, match="not one of"):
        load_config(environ={"DDB2BQ_GOOGLE_CREDENTIALS": "key-file"})


# --- workload identity federation --------------------------------------------------------------


def test_workload_identity_from_json_text_builds_aws_external_account_credentials() -> None:
    # GIVEN the external_account configuration as JSON text (an environment variable's value)
    text = json.dumps(AWS_EXTERNAL_ACCOUNT)
    # WHEN credentials are built
    credentials = CredentialsProvider(GoogleConfig(workload_identity_config=text)).get()
    # THEN they are google-auth's AWS credentials for that pool, impersonating the writer
    assert isinstance(credentials, aws.Credentials)
    assert credentials.info["audience"] == f"//iam.googleapis.com/{POOL}"
    assert credentials.service_account_email == WRITER


def test_workload_identity_signs_with_the_functions_own_aws_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the variables Lambda sets for the function's role (no metadata server in Lambda)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEXAMPLE")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    credentials = workload_identity_credentials(json.dumps(AWS_EXTERNAL_ACCOUNT))
    # WHEN google-auth builds the subject token it will exchange at Google's STS
    token = json.loads(unquote(credentials.retrieve_subject_token(None)))
    # THEN it is a signed GetCallerIdentity request in the function's region, made offline
    assert token["url"] == (
        "https://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    )
    headers = {h["key"]: h["value"] for h in token["headers"]}
    assert headers["x-goog-cloud-target-resource"] == f"//iam.googleapis.com/{POOL}"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEEXAMPLE00/")
    assert headers["x-amz-security-token"] == "IQoJb3JpZ2luX2VjEXAMPLE"


def test_workload_identity_from_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(AWS_EXTERNAL_ACCOUNT))
    credentials = workload_identity_credentials(str(path))
    assert isinstance(credentials, aws.Credentials)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("/nonexistent/wif.json", "cannot be read"),
        ("{not json", "is not JSON"),
        (json.dumps({"type": "service_account"}), 'not an "external_account"'),
        (
            json.dumps(
                {
                    **AWS_EXTERNAL_ACCOUNT,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                }
            ),
            "does not use an AWS source",
        ),
    ],
)
def test_a_bad_workload_identity_configuration_says_what_is_wrong(
    config: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        workload_identity_credentials(config)


# --- a key in Secrets Manager ------------------------------------------------------------------


def test_secret_key_is_read_once_and_cached_for_the_containers_life(
    key_json: dict[str, str],
) -> None:
    # GIVEN a key JSON stored in Secrets Manager
    secrets = FakeSecretsManager({SECRET_ID: json.dumps(key_json)})
    provider = CredentialsProvider(GoogleConfig(secret_id=SECRET_ID), secrets_client=secrets)
    # WHEN credentials are asked for on three invocations
    first, second, third = provider.get(), provider.get(), provider.get()
    # THEN they are service-account credentials for the key, and the secret was read once
    assert isinstance(first, service_account.Credentials)
    assert first.service_account_email == WRITER
    assert first is second is third
    assert secrets.calls == [SECRET_ID]


def test_the_secrets_client_is_made_only_when_the_secret_path_is_taken(
    key_json: dict[str, str],
) -> None:
    made: list[FakeSecretsManager] = []

    def factory(region: str | None) -> FakeSecretsManager:
        made.append(FakeSecretsManager({SECRET_ID: json.dumps(key_json)}))
        return made[-1]

    wif = CredentialsProvider(
        GoogleConfig(
            workload_identity_config=json.dumps(AWS_EXTERNAL_ACCOUNT), secret_id=SECRET_ID
        ),
        secrets_client_factory=factory,
    )
    wif.get()
    assert made == []
    CredentialsProvider(GoogleConfig(secret_id=SECRET_ID), secrets_client_factory=factory).get()
    assert len(made) == 1


def test_the_command_lines_secrets_client_is_in_the_source_region(
    key_json: dict[str, str],
) -> None:
    # GIVEN a configuration whose secret is named (not an ARN) and whose [source] region is set
    config = load_config(
        environ={
            "DDB2BQ_SOURCE_TABLE": "orders",
            "DDB2BQ_SOURCE_REGION": "eu-west-2",
            "DDB2BQ_GOOGLE_SECRET_ID": "ddb2bq/bigquery-key",
        }
    )
    regions: list[str | None] = []

    def factory(region: str | None) -> FakeSecretsManager:
        regions.append(region)
        return FakeSecretsManager({"ddb2bq/bigquery-key": json.dumps(key_json)})

    # WHEN the credentials are read through the provider the clients are built with
    provider_for(config, secrets_client_factory=factory).get()
    # THEN the Secrets Manager client was made for [source] region, not boto3's default
    assert regions == ["eu-west-2"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda key: "not json " + json.dumps(key),
        lambda key: json.dumps({**key, "type": "authorized_user"}),
        lambda key: json.dumps({k: v for k, v in key.items() if k != "token_uri"}),
        lambda key: json.dumps({**key, "private_key": key["private_key"].replace("M", "!", 5)}),
        lambda key: json.dumps({**key, "private_key": key["private_key"][:-80]}),
    ],
    ids=["not-json", "wrong-type", "missing-field", "corrupt-key", "truncated-key"],
)
def test_a_bad_secret_never_shows_the_key_in_errors_or_logs(
    key_json: dict[str, str],
    private_key_pem: str,
    damage: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a secret whose value is damaged in one way (it still holds most of the key)
    value = damage(key_json)
    secrets = FakeSecretsManager({SECRET_ID: value})
    provider = CredentialsProvider(GoogleConfig(secret_id=SECRET_ID), secrets_client=secrets)
    # WHEN the credentials are loaded, with every log record captured
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as raised:
        provider.get()
    logging.getLogger("ddb2bq").exception("the handler logs the error", exc_info=raised.value)
    # THEN the error names the secret, and no part of the key is in the error, its causes,
    # the formatted traceback, or the logs
    assert SECRET_ID in str(raised.value)
    shown = "\n".join(
        [
            "".join(traceback.format_exception(raised.value)),
            caplog.text,
            repr(raised.value.__cause__),
            repr(raised.value.__context__),
        ]
    )
    for piece in _key_material(private_key_pem):
        assert piece not in shown
    assert "PRIVATE KEY" not in shown


def test_a_loaded_key_is_never_logged(
    key_json: dict[str, str], private_key_pem: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = FakeSecretsManager({SECRET_ID: json.dumps(key_json)})
    CredentialsProvider(GoogleConfig(secret_id=SECRET_ID), secrets_client=secrets).get()
    assert "Google credentials loaded." in caplog.text
    for piece in _key_material(private_key_pem):
        assert piece not in caplog.text


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ResourceNotFoundException", ConfigError),
        ("AccessDeniedException", ConfigError),
        ("ThrottlingException", RetryableError),
        ("InternalServiceError", RetryableError),
    ],
)
def test_secrets_manager_errors_are_classed(code: str, error: type[Exception]) -> None:
    secrets = FakeSecretsManager({}, error_code=code)
    provider = CredentialsProvider(GoogleConfig(secret_id=SECRET_ID), secrets_client=secrets)
    with pytest.raises(error, match=SECRET_ID):
        provider.get()


# --- application default credentials and the emulator ------------------------------------------


def test_default_credentials_come_from_google_application_credentials(
    tmp_path: Path, key_json: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key_json))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    credentials = CredentialsProvider(GoogleConfig()).get()
    assert isinstance(credentials, service_account.Credentials)


def test_missing_default_credentials_say_how_to_configure_some(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(ConfigError, match="workload_identity_config"):
        CredentialsProvider(GoogleConfig(credentials="default")).get()


def test_anonymous_is_for_the_emulator() -> None:
    credentials = CredentialsProvider(GoogleConfig(credentials="anonymous")).get()
    assert isinstance(credentials, AnonymousCredentials)


# --- the Secrets Manager client's region -------------------------------------------------------

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ddb2bq/google-writer-key-AbCdEf"


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No region, no credentials: nothing from the developer's shell or ~/.aws, no metadata."""
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it found first (an earlier test's, in one
    # pytest process): start from none, as a fresh process does
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.mark.parametrize(
    ("secret_id", "region", "expected"),
    [
        (SECRET_ID, "ap-southeast-2", "ap-southeast-2"),  # [source] region, from the CLI
        (ARN, "ap-southeast-2", "eu-west-1"),  # the secret's own region wins
        (SECRET_ID, None, None),  # boto3's default: the Lambda function's region
    ],
)
def test_the_secrets_client_takes_the_secrets_region_else_the_configured_one(
    key_json: dict[str, str], secret_id: str, region: str | None, expected: str | None
) -> None:
    # GIVEN a key in Secrets Manager, named by name or by ARN, and a provider given a region
    regions: list[str | None] = []

    def factory(asked: str | None) -> FakeSecretsManager:
        regions.append(asked)
        return FakeSecretsManager({secret_id: json.dumps(key_json)})

    provider = CredentialsProvider(
        GoogleConfig(secret_id=secret_id), region=region, secrets_client_factory=factory
    )
    # WHEN the credentials are loaded
    provider.get()
    # THEN the client was made for the secret's region, else the given one
    assert regions == [expected]


def test_no_region_for_the_secret_is_a_configuration_error_naming_it(
    no_aws_environment: None,
) -> None:
    # GIVEN a secret named without its ARN, and no region anywhere (boto3's real client)
    provider = CredentialsProvider(GoogleConfig(secret_id=SECRET_ID))
    # WHEN the credentials are loaded  THEN one sentence names the secret and the settings
    with pytest.raises(ConfigError) as raised:
        provider.get()
    assert str(raised.value) == (
        f"The secret {SECRET_ID!r} cannot be read: no AWS region is known for it: give "
        "[google] secret_id as the secret's ARN, or set [source] region or AWS_REGION."
    )


def test_no_aws_credentials_for_the_secret_is_a_configuration_error(
    no_aws_environment: None,
) -> None:
    # GIVEN the secret's region from its ARN, and no AWS credentials anywhere
    provider = CredentialsProvider(GoogleConfig(secret_id=ARN))
    # WHEN the credentials are loaded  THEN the error names the secret and what to set
    with pytest.raises(ConfigError, match="no AWS credentials were found: set AWS_PROFILE") as e:
        provider.get()
    assert ARN in str(e.value)
