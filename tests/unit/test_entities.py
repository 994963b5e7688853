"""Entities of a single-table design: templates, typed key parts, rules, and their validation."""

from __future__ import annotations

import copy
import re
import tomllib
from datetime import date
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb2bq.entities import Entities, Entity, Template, typed_part
from ddb2bq.exceptions import ConfigError

KEYS = ("pk", "sk")
MODEL: list[dict[str, Any]] = [
    {
        "name": "users",
        "match": {"pk": "USER#{user_id}", "sk": "PROFILE"},
        "promote": ["email", "plan"],
    },
    {
        "name": "orders",
        "match": {"pk": "USER#{user_id}", "sk": "ORDER#{ordered_on}#{order_id}", "type": "Order"},
        "types": {"ordered_on": "DATE", "order_id": "INT64"},
        "promote": ["total", "status"],
    },
    {
        "name": "order_lines",
        "match": {"pk": "ORDER#{order_id}", "sk": "LINE#{line_no}"},
        "types": {"order_id": "INT64", "line_no": "INT64"},
        "promote": ["sku", "quantity", "price"],
    },
    {"name": "audit_events", "match": {"type": "AuditEvent"}},
]
DOCS = Path(__file__).parents[2] / "docs" / "entities.md"


def item(**attributes: str | int) -> dict[str, dict[str, str]]:
    """DynamoDB JSON: str values are S, int values are N."""
    return {
        name: {"N": str(value)} if isinstance(value, int) else {"S": value}
        for name, value in attributes.items()
    }


@pytest.fixture
def entities() -> Entities:
    return Entities.from_config(MODEL, table="shop", keys=KEYS)


def classified(entities: Entities, image: dict[str, Any]) -> tuple[str, dict[str, object]] | None:
    found = entities.classify(image)
    return None if found is None else (found[0].name, found[1])


# --- classification -------------------------------------------------------------------------


def test_a_profile_item_is_a_user_with_its_id_split_from_the_key(entities: Entities) -> None:
    # GIVEN a user profile item
    image = item(pk="USER#42", sk="PROFILE", email="a@example.com", plan="pro")
    # WHEN it is classified  THEN it is a user, with user_id pulled out of pk
    assert classified(entities, image) == ("users", {"user_id": "42"})


def test_an_order_has_its_typed_parts_split_from_both_keys(entities: Entities) -> None:
    # GIVEN an order item, told apart by its sort key prefix and its type attribute
    image = item(pk="USER#42", sk="ORDER#2026-11-30#981", type="Order", total=120)
    # WHEN it is classified
    found = classified(entities, image)
    # THEN it is an order; ordered_on is a DATE and order_id an int
    assert found == ("orders", {"user_id": "42", "ordered_on": "2026-11-30", "order_id": 981})
    assert isinstance(found[1]["order_id"], int)


def test_an_order_line_is_recognised_by_its_key_prefixes(entities: Entities) -> None:
    image = item(pk="ORDER#981", sk="LINE#3", sku="A-1", quantity=2)
    assert classified(entities, image) == ("order_lines", {"order_id": 981, "line_no": 3})


def test_an_item_is_recognised_by_its_type_attribute_alone(entities: Entities) -> None:
    # GIVEN an item whose keys no key rule knows, but whose type is AuditEvent
    image = item(pk="TENANT#9", sk="2026-11-30T10:00:00Z", type="AuditEvent")
    # WHEN classified  THEN the rule on type alone matches, with no key parts
    assert classified(entities, image) == ("audit_events", {})


def test_an_order_key_without_the_order_type_is_no_order(entities: Entities) -> None:
    image = item(pk="USER#42", sk="ORDER#2026-11-30#981", type="Refund")
    assert classified(entities, image) is None


def test_the_first_matching_rule_wins() -> None:
    # GIVEN an item that both the users rule and the type rule match
    image = item(pk="USER#42", sk="PROFILE", type="AuditEvent")
    users, audit = MODEL[0], MODEL[3]
    # WHEN classified with the rules in either order  THEN the earlier rule wins
    first = Entities.from_config([users, audit], table="shop", keys=KEYS)
    second = Entities.from_config([audit, users], table="shop", keys=KEYS)
    assert classified(first, image) == ("users", {"user_id": "42"})
    assert classified(second, image) == ("audit_events", {})


@pytest.mark.parametrize(
    "image",
    [
        item(pk="USER#42", sk="SETTINGS"),
        item(pk="USER#42"),
        item(pk="USER#", sk="PROFILE"),
        item(pk="user#42", sk="PROFILE"),
        item(pk="USER#42", sk="PROFILE "),
        {"pk": {"S": "USER#42"}, "sk": {"B": "UFJPRklMRQ=="}},
        item(pk="ORDER#981", sk=7),
        item(pk="ORDER#981", sk="LINE#"),
        {},
    ],
    ids=repr,
)
def test_an_item_matching_no_rule_is_of_no_entity(entities: Entities, image: Any) -> None:
    assert entities.classify(image) is None


def test_a_trailing_placeholder_takes_the_rest_of_the_value(entities: Entities) -> None:
    # GIVEN a profile whose pk carries a '#' after the user id
    image = item(pk="USER#42#EU", sk="PROFILE")
    # THEN the last placeholder takes the rest: put more specific rules first
    assert classified(entities, image) == ("users", {"user_id": "42#EU"})


@pytest.mark.parametrize(
    "hostile",
    [
        "x'; DROP TABLE y; --",
        "`dataset`.`table`",
        "{user_id}",
        "line\nbreak\x00nul",
        "名前🙂",
        "  ",
    ],
)
def test_hostile_values_are_only_data(entities: Entities, hostile: str) -> None:
    image = item(pk=f"USER#{hostile}", sk="PROFILE")
    assert classified(entities, image) == ("users", {"user_id": hostile})


def test_a_placeholder_used_twice_matches_only_the_same_text() -> None:
    # GIVEN an entity whose pk and sk both carry the user id
    entity = Entity("users", {"pk": "USER#{user_id}", "sk": "USER#{user_id}"})
    # THEN both places must agree
    assert entity.matches(item(pk="USER#42", sk="USER#42")) == {"user_id": "42"}
    assert entity.matches(item(pk="USER#42", sk="USER#43")) is None
    assert Template.parse("{a}#{a}").split("x#y") is None


# --- typed parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "part_type", "value"),
    [
        ("9007199254740993", "INT64", 9007199254740993),  # 2**53 + 1: beyond float precision
        ("9223372036854775807", "INT64", 2**63 - 1),
        ("-9223372036854775808", "INT64", -(2**63)),
        ("0", "INT64", 0),
        ("12345678901234567890123456789.123456789", "NUMERIC", "12345678901234567890123456789.123456789"),
        ("-0.000000001", "NUMERIC", "-0.000000001"),
        ("578960446186580977117854925043439539266.34992332820282019728792003956564819967",
         "BIGNUMERIC",
         "578960446186580977117854925043439539266.34992332820282019728792003956564819967"),
        ("-578960446186580977117854925043439539266.34992332820282019728792003956564819968",
         "BIGNUMERIC",
         "-578960446186580977117854925043439539266.34992332820282019728792003956564819968"),
        ("2026-11-30", "DATE", "2026-11-30"),
        ("2024-02-29", "DATE", "2024-02-29"),
        ("2026-11-30T10:00:00Z", "TIMESTAMP", "2026-11-30T10:00:00.000000Z"),
        ("2026-11-30T10:00:00.123+02:00", "TIMESTAMP", "2026-11-30T08:00:00.123000Z"),
        ("2026-11-30T10:00:00.123456-05:30", "TIMESTAMP", "2026-11-30T15:30:00.123456Z"),
        ("true", "BOOL", True),
        ("false", "BOOL", False),
        ("007", "STRING", "007"),
    ],
)  # fmt: skip
def test_a_canonical_typed_part_gives_its_exact_value(
    text: str, part_type: str, value: object
) -> None:
    result = typed_part(text, part_type)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("text", "part_type"),
    [
        *[(t, "INT64") for t in ["007", "+7", "-0", " 7", "7 ", "7.0", "1e3", "٣", "", "9223372036854775808"]],
        *[(t, "NUMERIC") for t in ["1.50", ".5", "5.", "01", "-0", "+1", "1e5", "1" * 30, "0." + "1" * 10]],
        *[(t, "BIGNUMERIC") for t in ["1.0", "1" * 40, "578960446186580977117854925043439539266.34992332820282019728792003956564819968"]],
        *[(t, "DATE") for t in ["2026-2-1", "20260201", "2026-02-30", "2025-02-29", "0000-01-01", "2026-11-30T00:00:00Z"]],
        *[(t, "TIMESTAMP") for t in ["2026-11-30 10:00:00Z", "2026-11-30T10:00:00", "2026-11-30T10:00:00.12Z", "2026-11-30T10:00Z", "2026-11-30T25:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00", "2026-11-30T10:00:00z"]],
        *[(t, "BOOL") for t in ["True", "FALSE", "1", "yes", ""]],
    ],
)  # fmt: skip
def test_a_non_canonical_typed_part_has_no_value(text: str, part_type: str) -> None:
    assert typed_part(text, part_type) is None


@pytest.mark.parametrize(
    "sk",
    ["ORDER#2026-2-1#981", "ORDER#2026-11-30#0981", "ORDER#2026-11-30#+981", "ORDER#2026-11-31#1"],
)
def test_an_item_with_a_non_canonical_typed_part_is_not_that_entity(
    entities: Entities, sk: str
) -> None:
    # GIVEN an order whose date or id is not spelled canonically
    image = item(pk="USER#42", sk=sk, type="Order")
    # THEN it is not an order (rebuilding the key from the typed parts would change it)
    assert entities.classify(image) is None


def test_the_key_part_columns_come_in_rule_order_with_their_types(entities: Entities) -> None:
    columns = {e.name: [(c.name, c.type) for c in e.columns()] for e in entities}
    assert columns == {
        "users": [("user_id", "STRING")],
        "orders": [("user_id", "STRING"), ("ordered_on", "DATE"), ("order_id", "INT64")],
        "order_lines": [("order_id", "INT64"), ("line_no", "INT64")],
        "audit_events": [],
    }


def test_a_remove_is_classified_by_its_keys_only_when_the_rule_reads_only_keys(
    entities: Entities,
) -> None:
    only_keys = {e.name: e.needs_only_keys(KEYS) for e in entities}
    assert only_keys == {
        "users": True,
        "orders": False,
        "order_lines": True,
        "audit_events": False,
    }


def test_entities_are_looked_up_by_name(entities: Entities) -> None:
    assert len(entities) == 4
    assert entities.named("orders").promote == ("total", "status")
    with pytest.raises(KeyError):
        entities.named("ORDERS")


def test_an_entity_built_in_code_refuses_an_unknown_type() -> None:
    with pytest.raises(ValueError, match="INTEGER"):
        Entity("orders", {"sk": "ORDER#{n}"}, {"n": "INTEGER"})


# --- templates ------------------------------------------------------------------------------


def test_a_literal_only_template_matches_exactly() -> None:
    template = Template.parse("PROFILE")
    assert template.split("PROFILE") == {}
    assert [template.split(v) for v in ["PROFILE#", "profile", "XPROFILE", ""]] == [None] * 4
    assert template.build({}) == "PROFILE"


def test_a_placeholder_stops_at_the_first_character_of_its_separator() -> None:
    # GIVEN a multi-character separator
    template = Template.parse("{tenant}::{id}")
    # THEN a part runs to the first ':' and the whole separator must follow it
    assert template.split("acme::7") == {"tenant": "acme", "id": "7"}
    assert template.split("acme:eu::7") is None
    assert template.split("acme::7::8") == {"tenant": "acme", "id": "7::8"}


@pytest.mark.parametrize(
    "parts",
    [
        {"tenant": "a:b", "id": "7"},
        {"tenant": "", "id": "7"},
        {"tenant": "a", "id": ""},
        {"id": "7"},
    ],
)
def test_build_refuses_parts_that_would_not_split_back(parts: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"tenant|id"):
        Template.parse("{tenant}::{id}").build(parts)


# --- validation -----------------------------------------------------------------------------


def with_orders(**changes: Any) -> list[dict[str, Any]]:
    """MODEL with the orders entity (entity 2) changed; a None value removes the setting."""
    model = copy.deepcopy(MODEL)
    for setting, value in changes.items():
        if value is None:
            model[1].pop(setting)
        else:
            model[1][setting] = value
    return model


ORDERS_MATCH = MODEL[1]["match"]
TYPES = MODEL[1]["types"]


@pytest.mark.parametrize(
    ("model", "setting", "offending"),
    [
        (with_orders(types={**TYPES, "order_id": "INTEGER"}), "types.order_id", "'INTEGER'"),
        (with_orders(types={**TYPES, "customer": "INT64"}), "types.customer", "'customer'"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}{order_id}"}), "match.sk", "{ordered_on}{order_id}"),
        (with_orders(match={**ORDERS_MATCH, "sk": ""}), "match.sk", "''"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on"}), "match.sk", "ORDER#{ordered_on"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{}"}), "match.sk", "{}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#}{ordered_on}"}), "match.sk", "ORDER#}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}-{order_id}"}), "match.sk", "{ordered_on}-"),
        (with_orders(match={**ORDERS_MATCH, "pk": "USER#{userId}", "sk": "ORDER#{ordered_on}#{userid}"}), "match.sk", "{userid}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{item}"}), "match.sk", "{item}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{_seq}"}), "match.sk", "{_seq}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{_Changed_At}"}), "match.sk", "{_Changed_At}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{_deleted}"}), "match.sk", "{_deleted}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{_entity}"}), "match.sk", "{_entity}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{PK}"}), "match.sk", "{PK}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{order id}"}), "match.sk", "{order_id}"),
        (with_orders(match={**ORDERS_MATCH, "sk": "ORDER#{ordered_on}#{_CHANGE_TYPE}"}), "match.sk", "{a_CHANGE_TYPE}"),
        (with_orders(match={**ORDERS_MATCH, "type": 3}), "match.type", "3"),
        (with_orders(match={}), "match", "{}"),
        (with_orders(match=None), "match", "None"),
        (with_orders(promote=["total", "user_id"]), "match.pk", "{user_id}"),
        (with_orders(promote=["pk"]), "promote", "'pk'"),
        (with_orders(promote=["total", "total"]), "promote", "'total'"),
        (with_orders(promote="total"), "promote", "'total'"),
        (with_orders(promotes=["total"]), "promotes", "unknown setting"),
        (with_orders(types=["INT64"]), "types", "['INT64']"),
        (with_orders(name="Users"), "name", "'users'"),
        (with_orders(name="shop"), "name", "'shop'"),
        (with_orders(name="shop_changes"), "name", "'shop_changes'"),
        (with_orders(name="SHOP_GENERATIONS"), "name", "'shop_generations'"),
        (with_orders(name="order-lines"), "name", "'order-lines'"),
        (with_orders(name="2026_orders"), "name", "'2026_orders'"),
        (with_orders(name="o" * 1025), "name", "'ooo"),
    ],
)  # fmt: skip
def test_a_bad_entity_is_refused_naming_the_entity_the_setting_and_the_text(
    model: list[dict[str, Any]], setting: str, offending: str
) -> None:
    # GIVEN a configuration whose second entity is wrong in one way
    # WHEN it is loaded
    with pytest.raises(ConfigError) as raised:
        Entities.from_config(model, table="shop", keys=KEYS)
    # THEN the message names the entity (index and name), the setting, the text and a fix
    message = str(raised.value)
    assert re.match(r"Entity 2 \('[^']*'\), \[\[entities\]\] ", message), message
    assert f"[[entities]] {setting}" in message
    assert offending in message
    assert re.search(r"\. [A-Z][^.]*\.$", message), f"no fix sentence: {message}"


def test_an_entity_without_a_name_is_named_by_its_index() -> None:
    with pytest.raises(ConfigError, match=r"Entity 1 \(no name\), \[\[entities\]\] name"):
        Entities.from_config([{"match": {"pk": "A"}}], table="shop", keys=KEYS)


def test_a_template_on_a_number_key_is_refused() -> None:
    raw = [{"name": "events", "match": {"pk": "DEVICE#{device}", "sk": "{at}"}}]
    with pytest.raises(ConfigError, match=r"Entity 1 \('events'\).* match\.sk = '\{at\}'.* N"):
        Entities.from_config(raw, table="shop", keys=KEYS, key_types={"pk": "S", "sk": "N"})


@pytest.mark.parametrize("raw", [{"name": "users"}, "users"])
def test_entities_that_are_not_a_list_of_tables_are_refused(raw: Any) -> None:
    with pytest.raises(ConfigError, match=r"\[\[entities\]\]"):
        Entities.from_config(raw, table="shop", keys=KEYS)


def test_an_entity_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"Entity 2 \(no name\).*'users'"):
        Entities.from_config([MODEL[0], "users"], table="shop", keys=KEYS)


def test_the_documented_example_loads_and_classifies() -> None:
    # GIVEN the configuration in docs/entities.md
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert block is not None
    config = tomllib.loads(block.group(1))
    # WHEN it is loaded  THEN its items classify as the page says
    entities = Entities.from_config(config["entities"], table=config["source"]["table"], keys=KEYS)
    assert [e.name for e in entities] == ["users", "orders", "order_lines"]
    line = item(pk="ORDER#981", sk="LINE#1")
    assert classified(entities, line) == ("order_lines", {"order_id": 981, "line_no": 1})


# --- properties -----------------------------------------------------------------------------

SEPARATORS = ["#", "|", ":", "::", "#x#", "##", "/", "-", " ", "→", "é", "🙂", "ab", "\n"]
LITERAL = st.one_of(
    st.sampled_from(SEPARATORS),
    st.text(
        st.characters(exclude_characters="{}", exclude_categories=("Cs",)), min_size=1, max_size=3
    ),
)
PART_ALPHABET = "ax0#|:/-→é🙂b \n"


@st.composite
def templates(draw: st.DrawFn) -> Template:
    """Templates of 1 to 4 placeholders between generated literals (the outer ones optional)."""
    count = draw(st.integers(1, 4))
    text = draw(st.one_of(st.just(""), LITERAL))
    for index in range(count):
        last = index == count - 1
        text += f"{{p{index}}}" + draw(st.one_of(st.just(""), LITERAL) if last else LITERAL)
    return Template.parse(text)


def stop_character(template: Template, name: str) -> str:
    return template.literals[template.names.index(name) + 1][:1]


@st.composite
def valid_parts(draw: st.DrawFn, template: Template) -> dict[str, str]:
    """Parts that are never empty and never hold the first character of the literal after them."""
    parts = {}
    for name in template.names:
        alphabet = [
            c
            for c in PART_ALPHABET + template.text
            if c not in stop_character(template, name) + "{}"
        ]
        parts[name] = draw(st.text(st.sampled_from(alphabet), min_size=1, max_size=6))
    return parts


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_splitting_a_built_key_gives_the_parts_back(data: st.DataObject) -> None:
    template = data.draw(templates())
    parts = data.draw(valid_parts(template))
    assert template.split(template.build(parts)) == parts


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_build_refuses_exactly_the_parts_that_would_not_split_back(data: st.DataObject) -> None:
    template = data.draw(templates())
    alphabet = st.sampled_from(PART_ALPHABET + template.text.replace("{", "").replace("}", ""))
    parts = {name: data.draw(st.text(alphabet, max_size=6)) for name in template.names}
    valid = all(
        part and not set(stop_character(template, n)) & set(part) for n, part in parts.items()
    )
    try:
        key = template.build(parts)
    except ValueError:
        assert not valid
    else:
        assert valid
        assert template.split(key) == parts


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_key_that_splits_is_built_again_from_its_parts(data: st.DataObject) -> None:
    # GIVEN a template and a key made of its literals and arbitrary text in between
    template = data.draw(templates())
    noise = st.text(st.sampled_from(PART_ALPHABET + template.text), max_size=5)
    pieces = [template.literals[0]]
    for literal in template.literals[1:]:
        pieces += [data.draw(noise), literal]
    key = data.draw(st.one_of(st.just("".join(pieces)), noise))
    # WHEN it is split  THEN it does not match, or its parts build exactly the key again
    parts = template.split(key)
    assert parts is None or template.build(parts) == key


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.text("0123456789-+. e", max_size=22))
def test_an_int64_part_has_one_spelling(number: int, text: str) -> None:
    assert typed_part(str(number), "INT64") == number
    value = typed_part(text, "INT64")
    assert value is None or str(value) == text


@settings(max_examples=200, deadline=None)
@given(st.text("0123456789-.", max_size=42))
def test_a_numeric_part_has_one_spelling(text: str) -> None:
    value = typed_part(text, "NUMERIC")
    assert value is None or value == text == format(Decimal(text).normalize(Context(prec=60)), "f")


# Written out: arithmetic (even unary minus) in the default decimal context rounds to 28 digits.
NUMERIC_MAX = "9" * 29 + "." + "9" * 9
NUMERICS = st.decimals(Decimal("-" + NUMERIC_MAX), Decimal(NUMERIC_MAX), places=9)


@settings(max_examples=200, deadline=None)
@given(NUMERICS)
def test_every_numeric_has_a_canonical_part(number: Decimal) -> None:
    text = format(number.normalize(Context(prec=60)), "f")
    assert typed_part(text.removeprefix("-") if text == "-0" else text, "NUMERIC") is not None


@settings(max_examples=200, deadline=None)
@given(st.dates())
def test_a_date_part_is_its_iso_spelling(day: date) -> None:
    assert typed_part(day.isoformat(), "DATE") == day.isoformat()
