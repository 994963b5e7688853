"""botocore's errors, as the state store's: one sentence naming the DynamoDB table and what to do.

A failed condition is not an error of the store but an answer (the lease is held, the checkpoint
moved): it becomes :class:`ConditionFailedError`, which the store turns into None, a retry or
LeaseLost.
botocore is imported inside the functions: it is an optional dependency (``ddb2bq[aws]``).
"""

from __future__ import annotations

from ddb2bq.state.errors import StateError, StateUnavailable

_MISSING = frozenset(("ResourceNotFoundException",))
_DENIED = frozenset(
    ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
     "ExpiredTokenException", "MissingAuthenticationTokenException", "IncompleteSignature",
     "InvalidClientTokenId", "SignatureDoesNotMatch")
)  # fmt: skip
_RETRYABLE = frozenset(
    ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
     "InternalServerError", "ServiceUnavailable", "TransactionConflictException",
     "TransactionInProgressException", "LimitExceededException")
)  # fmt: skip
_CONDITION = "ConditionalCheckFailed"


class ConditionFailedError(StateError):
    """A conditional write was refused; never leaves the store (it answers with None, a retry
    or LeaseLost)."""


def translate(exc: Exception, table_name: str, action: str) -> StateError:
    """The StateError (or retryable StateUnavailable) for botocore's ``exc`` raised while
    ``action`` (such as ``"saving a checkpoint"``) on the state table ``table_name``."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 (optional dependency)

    if isinstance(exc, ClientError):
        return _client_error(exc, table_name, action)
    return _transport_error(exc, table_name, action)


def _client_error(exc: Exception, table_name: str, action: str) -> StateError:
    response = getattr(exc, "response", None)
    response = response if isinstance(response, dict) else {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    table = f"the DynamoDB state table {table_name!r}"
    if code == f"{_CONDITION}Exception" or _condition_cancelled(response):
        return ConditionFailedError(f"A condition on {table} failed while {action}.")
    if code in _MISSING:
        return StateError(
            f"The DynamoDB state table {table_name!r} does not exist in this account and region; "
            "create it (ddb2bq.state.create_table makes one) or correct its name in the setting."
        )
    if code in _DENIED:
        return StateError(
            f"Access to {table} was refused while {action} ({code}); give these credentials "
            "dynamodb:GetItem, PutItem, UpdateItem, Query and ConditionCheckItem on it."
        )
    if code in _RETRYABLE or status >= 500 or code == "TransactionCanceledException":
        return StateUnavailable(
            f"DynamoDB was busy or failing while {action} on {table} ({code or status}); "
            "retry after a back-off."
        )
    return StateError(f"DynamoDB refused {action} on {table} ({code}: {_message(response)}).")


def _transport_error(exc: Exception, table_name: str, action: str) -> StateError:
    from botocore import exceptions as errors  # noqa: PLC0415 (optional dependency)

    table = f"the DynamoDB state table {table_name!r}"
    if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
        return StateError(
            f"No AWS credentials were found for {table}; set AWS_PROFILE or the AWS_ACCESS_KEY_ID "
            "variables, or give the container a role."
        )
    if isinstance(exc, errors.NoRegionError):
        return StateError(f"No AWS region is set for {table}; set AWS_DEFAULT_REGION.")
    if isinstance(exc, errors.ConnectionError | errors.HTTPClientError):  # refused, reset, timeout
        return StateUnavailable(
            f"DynamoDB could not be reached while {action} on {table} ({exc}); check the "
            "network and the endpoint, retrying may help."
        )
    return StateError(f"Calling DynamoDB failed while {action} on {table} ({exc}).")


def _condition_cancelled(response: dict[str, object]) -> bool:
    """True when a transaction was cancelled by a failed condition (not a conflict)."""
    reasons = response.get("CancellationReasons")
    if not isinstance(reasons, list):
        return False
    return any(isinstance(r, dict) and r.get("Code") == _CONDITION for r in reasons)


def _message(response: dict[str, object]) -> str:
    error = response.get("Error")
    return str(error.get("Message", "")) if isinstance(error, dict) else ""
