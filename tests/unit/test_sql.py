"""Identifier quoting, table references and query parameters: names stay names, values stay values."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from google.api_core import exceptions as api
from hypothesis import given
from hypothesis import strategies as st

from ddb2bq.bigquery.sql import TableRef, api_error, param, quote, quote_all
from ddb2bq.exceptions import RetryableError, TerminalError


def unquote(quoted: str) -> str:
    """Read a backtick-quoted identifier the way BigQuery's lexer does."""
    assert quoted[0] == quoted[-1] == "`"
    out, chars = [], iter(quoted[1:-1])
    for char in chars:
        if char == "`":
            raise AssertionError(f"an unescaped backtick ends the identifier early: {quoted}")
        out.append(next(chars) if char == "\\" else char)
    return "".join(out)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("status", "`status`"),
        ("select", "`select`"),
        ("from", "`from`"),
        ("first name", "`first name`"),
        ("x`; DROP TABLE y; --", "`x\\`; DROP TABLE y; --`"),
        ("back\\slash", "`back\\\\slash`"),
        ("ends with \\", "`ends with \\\\`"),
        ("", "``"),
        ("名前", "`名前`"),
    ],
)
def test_quote_escapes_backslash_and_backtick_and_rejects_nothing(name: str, expected: str) -> None:
    # GIVEN an attribute name (user data) WHEN quoted THEN it is one identifier, read back intact
    assert quote(name) == expected
    assert unquote(quote(name)) == name


@given(st.text())
def test_every_text_quotes_to_one_identifier_that_reads_back_as_itself(name: str) -> None:
    assert unquote(quote(name)) == name


def test_quote_all_joins_quoted_names() -> None:
    assert quote_all(["pk", "select", "a`b"]) == "`pk`, `select`, `a\\`b`"


def test_table_ref_quotes_each_part_and_names_it_for_the_api() -> None:
    # GIVEN a project id with a dash (valid in BigQuery) WHEN referenced THEN each part is quoted
    ref = TableRef("my-project", "dynamodb", "orders_changes")
    assert ref.sql == "`my-project`.`dynamodb`.`orders_changes`"
    assert ref.api == str(ref) == "my-project.dynamodb.orders_changes"
    assert ref.dataset_id == "my-project.dynamodb"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "BOOL"),
        (7, "INT64"),
        (Decimal("1.5"), "BIGNUMERIC"),
        ("x'; DROP TABLE t; --", "STRING"),
        (b"\x00", "BYTES"),
        (datetime(2024, 1, 1, tzinfo=UTC), "TIMESTAMP"),
    ],
)
def test_param_types_follow_the_python_value(value: object, kind: str) -> None:
    # GIVEN a value WHEN made a parameter THEN it travels typed, outside the SQL text
    parameter = param("p", value)
    assert (parameter.name, parameter.type_, parameter.value) == ("p", kind, value)


def test_param_refuses_a_value_it_cannot_type_unless_told() -> None:
    with pytest.raises(TypeError, match="pass type_"):
        param("p", object())
    assert param("p", None, "STRING").type_ == "STRING"


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (api.ServiceUnavailable("down"), True),
        (api.TooManyRequests("slow down"), True),
        (api.BadRequest("Could not serialize access to table due to concurrent update"), True),
        (api.BadRequest("Syntax error"), False),
        (api.Forbidden("no"), False),
    ],
)
def test_api_errors_are_classed_retryable_or_terminal(error: Exception, retryable: bool) -> None:
    # GIVEN a failed BigQuery call WHEN turned into a ddb2bq error THEN its class says what helps
    converted = api_error(error, "table p.d.t")
    assert isinstance(converted, RetryableError if retryable else TerminalError)
    assert "table p.d.t" in str(converted)
