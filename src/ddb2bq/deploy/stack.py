"""Turning on the table's stream, uploading the zip, and creating or updating the stack.

Every function takes the boto3 client it uses (``dynamodb``, ``s3``, ``cloudformation``), so the
command line passes real ones and tests pass clients on moto or a recording fake.

- :func:`enable_stream`: UpdateTable with a NEW_AND_OLD_IMAGES stream; a no-op when that stream
  is already on; refuses to replace a stream of another view type (its readers would lose it).
- :func:`upload_code`: the zip under a content-addressed key (``...-<sha256>.zip``), so new code
  is a change CloudFormation sees, and an unchanged zip is not uploaded again.
- :func:`check_owner`: a stack of the name that replicates another table (its
  :data:`~ddb2bq.deploy.template.TABLE_TAG` tag, or the stream of its template for stacks made
  before the tag) is never updated.
- :func:`deploy_stack`: a change set (CREATE or UPDATE), waited for, each change reported,
  then executed and waited for; "no changes" is success.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ddb2bq.deploy.template import STREAM_ARN, TABLE_TAG
from ddb2bq.dynamodb import tables
from ddb2bq.dynamodb.connect import error_code
from ddb2bq.exceptions import ConfigError, Ddb2bqError

VIEW_TYPE = "NEW_AND_OLD_IMAGES"
CAPABILITIES = ["CAPABILITY_IAM"]
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_DONE = frozenset(("CREATE_COMPLETE", "UPDATE_COMPLETE"))
_FAILED_SUFFIXES = ("_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED")

Sleep = Callable[[float], None]


class DeployError(Ddb2bqError):
    """The stack could not be created or updated; the message says what CloudFormation said."""


@dataclass(frozen=True, slots=True)
class StreamState:
    """The table's stream after :func:`enable_stream`; ``changed`` when this call turned it on."""

    table: str
    stream_arn: str
    changed: bool


@dataclass(frozen=True, slots=True)
class Change:
    """One resource change of a change set, as CloudFormation describes it."""

    action: str
    logical_id: str
    resource_type: str
    replacement: str

    def __str__(self) -> str:
        return (
            f"{self.action:<8} {self.logical_id:<22} {self.resource_type:<34} "
            f"replacement: {self.replacement}"
        )


@dataclass(frozen=True, slots=True)
class DeployResult:
    """What a deploy did: the stack, whether it was new, its changes, its final status."""

    stack_name: str
    created: bool
    changes: tuple[Change, ...]
    status: str
    outputs: dict[str, str]


def enable_stream(dynamodb: Any, table: str) -> StreamState:
    """Turn on a NEW_AND_OLD_IMAGES stream on ``table``; nothing to do when it is on already.

    >>> enable_stream(boto3.client("dynamodb"), "orders").stream_arn  # doctest: +SKIP
    'arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000'
    """
    description = dynamodb.describe_table(TableName=table)["Table"]
    spec = description.get("StreamSpecification") or {}
    if spec.get("StreamEnabled"):
        view = spec.get("StreamViewType")
        if view != VIEW_TYPE:
            raise ConfigError(
                f"Table {table!r} already has a stream of view type {view}; ddb2bq needs "
                f"{VIEW_TYPE}. A table has one stream: turn it off (update-table "
                "--stream-specification StreamEnabled=false) once its readers are done, then "
                "run enable-stream again."
            )
        return StreamState(table, description["LatestStreamArn"], changed=False)
    response = dynamodb.update_table(
        TableName=table,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": VIEW_TYPE},
    )
    return StreamState(table, response["TableDescription"]["LatestStreamArn"], changed=True)


def stream_arn_of(dynamodb: Any, table: str) -> str:
    """The ARN of ``table``'s current stream (:func:`ddb2bq.dynamodb.tables.stream_arn_of`);
    a table without one is a ConfigError saying what to do."""
    arn = tables.stream_arn_of(dynamodb, table)
    if arn is None:
        raise ConfigError(
            f"Table {table!r} has no stream; run `ddb2bq enable-stream` first, or set "
            "[lambda] stream_arn."
        )
    return arn


def code_key_for(base_key: str, zip_bytes: bytes) -> str:
    """``base_key`` with the zip's SHA-256 before the suffix.

    >>> code_key_for("ddb2bq/ddb2bq-lambda.zip", b"PK")[:32]
    'ddb2bq/ddb2bq-lambda-fcab7fcc2b4'
    """
    digest = hashlib.sha256(zip_bytes).hexdigest()[:16]
    path = PurePosixPath(base_key)
    return str(path.with_name(f"{path.stem}-{digest}{path.suffix or '.zip'}"))


def upload_code(s3: Any, bucket: str, base_key: str, body: bytes) -> str:
    """Upload the zip ``body`` to ``bucket`` under its content-addressed key
    (:func:`code_key_for`), unless it is there already; returns the key."""
    key = code_key_for(base_key, body)
    if _object_exists(s3, bucket, key):
        return key
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    except s3.exceptions.ClientError as exc:
        if error_code(exc) != "NoSuchBucket":
            raise
        raise ConfigError(
            f"S3 bucket {bucket!r} ([lambda] code_bucket) does not exist: create it (aws s3 mb "
            f"s3://{bucket}) or set [lambda] code_bucket to a bucket that does."
        ) from exc
    return key


def check_code(s3: Any, bucket: str, key: str) -> None:
    """Refuse to deploy a function whose zip is not at ``s3://bucket/key`` (CloudFormation would
    fail to create it and leave the stack in ROLLBACK_COMPLETE)."""
    if not _object_exists(s3, bucket, key):
        raise ConfigError(
            f"There is no s3://{bucket}/{key} to create the function from: pass --zip (a zip from "
            "`ddb2bq package`) to upload one, or set [lambda] code_bucket and code_key (--code-key) "
            "to where it is."
        )


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return False
        raise
    return True


def owner_of(cloudformation: Any, stack_name: str) -> str | None:
    """The table stack ``stack_name`` replicates; ``""`` when ddb2bq did not make it, None when
    there is no such stack (or only an empty one, REVIEW_IN_PROGRESS).

    The table is the stack's :data:`~ddb2bq.deploy.template.TABLE_TAG` tag, or, on stacks ddb2bq
    made before it tagged them, the table of its template's stream.
    """
    found = _describe(cloudformation, stack_name)
    if found is None:
        return None
    tags = {tag["Key"]: tag["Value"] for tag in found.get("Tags") or []}
    if TABLE_TAG in tags:
        return str(tags[TABLE_TAG])
    if found["StackStatus"] == "REVIEW_IN_PROGRESS":
        return None
    return _template_table(cloudformation, stack_name)


def check_owner(cloudformation: Any, stack_name: str, table: str) -> None:
    """Refuse to update ``stack_name`` when it replicates another table than ``table``."""
    owner = owner_of(cloudformation, stack_name)
    if owner is None or owner == table:
        return
    whose = f"replicates table {owner!r}" if owner else "was not made by ddb2bq"
    raise ConfigError(
        f"Stack {stack_name!r} {whose}, not [source] table {table!r}, and deploying would take it "
        f"over: set [lambda] stack_name and function_name to names of {table!r}'s own (or leave "
        "both out: the names ddb2bq derives are unique per table)."
    )


def check_renamed(cloudformation: Any, old_name: str, new_name: str, table: str) -> None:
    """Refuse to create ``new_name`` while ``old_name``, the name earlier ddb2bq versions gave
    ``table``'s stack, replicates it: two stacks would read the one stream."""
    if owner_of(cloudformation, old_name) != table:
        return
    raise ConfigError(
        f"Stack {old_name!r}, named by an earlier ddb2bq, already replicates table {table!r}, and "
        f"a new stack {new_name!r} would read its stream a second time: set [lambda] stack_name "
        f"and function_name to {old_name!r} to keep deploying to it, or delete it first."
    )


def _template_table(cloudformation: Any, stack_name: str) -> str:
    body: Any = cloudformation.get_template(StackName=stack_name).get("TemplateBody", {})
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return ""  # not JSON: not a template ddb2bq wrote
    resources = body.get("Resources", {}) if isinstance(body, dict) else {}
    arn = resources.get("StreamMapping", {}).get("Properties", {}).get("EventSourceArn")
    match = STREAM_ARN.match(arn) if isinstance(arn, str) else None
    return match["table"] if match else ""


def deploy_stack(
    cloudformation: Any,
    stack_name: str,
    template_body: str,
    *,
    execute: bool = True,
    tags: Mapping[str, str] | None = None,
    report: Callable[[str], None] = print,
    sleep: Sleep = time.sleep,
    timeout: float = 1800.0,
) -> DeployResult:
    """Create or update ``stack_name`` through a change set; report each change, then execute.

    With ``execute=False`` the change set is described and deleted, nothing else. ``tags`` go
    on the stack (and CloudFormation puts them on its resources).
    """
    created = not _stack_exists(cloudformation, stack_name)
    name = f"ddb2bq-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    cloudformation.create_change_set(
        StackName=stack_name,
        ChangeSetName=name,
        ChangeSetType="CREATE" if created else "UPDATE",
        TemplateBody=template_body,
        Capabilities=CAPABILITIES,
        Description="ddb2bq deploy",
        Tags=[{"Key": key, "Value": value} for key, value in sorted((tags or {}).items())],
    )
    described = _wait_for_change_set(cloudformation, stack_name, name, sleep, timeout)
    if described is None:
        report(f"Stack {stack_name}: no changes.")
        cloudformation.delete_change_set(StackName=stack_name, ChangeSetName=name)
        return DeployResult(stack_name, False, (), _stack_status(cloudformation, stack_name), {})
    changes = tuple(_changes(cloudformation, stack_name, name, described))
    report(f"Stack {stack_name}: {'create' if created else 'update'}, {len(changes)} change(s):")
    for change in changes:
        report(f"  {change}")
    if not execute:
        cloudformation.delete_change_set(StackName=stack_name, ChangeSetName=name)
        return DeployResult(stack_name, created, changes, "NOT_EXECUTED", {})
    cloudformation.execute_change_set(StackName=stack_name, ChangeSetName=name)
    status = _wait_for_stack(cloudformation, stack_name, sleep, timeout)
    outputs = _outputs(cloudformation, stack_name)
    report(f"Stack {stack_name}: {status}.")
    return DeployResult(stack_name, created, changes, status, outputs)


def _stack_exists(cloudformation: Any, stack_name: str) -> bool:
    """Whether a stack to update exists (one left in REVIEW_IN_PROGRESS is created again)."""
    found = _describe(cloudformation, stack_name)
    return found is not None and found["StackStatus"] != "REVIEW_IN_PROGRESS"


def _describe(cloudformation: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def _wait_for_change_set(
    cloudformation: Any, stack_name: str, name: str, sleep: Sleep, timeout: float
) -> dict[str, Any] | None:
    """The described change set once created; None when it holds no changes."""
    for _ in _polls(sleep, timeout, f"change set {name} of stack {stack_name}"):
        described: dict[str, Any] = cloudformation.describe_change_set(
            StackName=stack_name, ChangeSetName=name
        )
        status = described["Status"]
        if status == "CREATE_COMPLETE":
            return described
        if status == "FAILED":
            reason = described.get("StatusReason", "")
            if any(text in reason for text in _NO_CHANGES):
                return None
            raise DeployError(f"The change set for stack {stack_name} failed: {reason}")
    raise AssertionError("unreachable")  # pragma: no cover


def _changes(
    cloudformation: Any, stack_name: str, name: str, first: dict[str, Any]
) -> Iterator[Change]:
    page = first
    while True:
        for entry in page.get("Changes", []):
            resource = entry.get("ResourceChange", {})
            yield Change(
                action=resource.get("Action", "?"),
                logical_id=resource.get("LogicalResourceId", "?"),
                resource_type=resource.get("ResourceType", "?"),
                replacement=resource.get("Replacement") or "-",
            )
        token = page.get("NextToken")
        if not token:
            return
        page = cloudformation.describe_change_set(
            StackName=stack_name, ChangeSetName=name, NextToken=token
        )


def _wait_for_stack(cloudformation: Any, stack_name: str, sleep: Sleep, timeout: float) -> str:
    for _ in _polls(sleep, timeout, f"stack {stack_name}"):
        status = _stack_status(cloudformation, stack_name)
        if status in _DONE:
            return status
        if status.endswith(_FAILED_SUFFIXES):
            raise DeployError(
                f"Stack {stack_name} ended in {status}: {_failure_reason(cloudformation, stack_name)}"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _stack_status(cloudformation: Any, stack_name: str) -> str:
    status: str = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    return status


def _failure_reason(cloudformation: Any, stack_name: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_name).get("StackEvents", [])
    for event in events:
        if event.get("ResourceStatus", "").endswith("_FAILED"):
            return f"{event.get('LogicalResourceId')}: {event.get('ResourceStatusReason', '?')}"
    return "no failed resource reported; see the stack's events"


def _outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _polls(sleep: Sleep, timeout: float, what: str) -> Iterator[int]:
    """Yield until ``timeout`` seconds of sleeping have passed, backing off from 1 s to 10 s."""
    waited, delay, attempt = 0.0, 1.0, 0
    while waited <= timeout:
        yield attempt
        attempt += 1
        sleep(delay)
        waited += delay
        delay = min(delay * 1.5, 10.0)
    raise DeployError(f"Timed out after {timeout:.0f} s waiting for {what}.")
