"""The mirrors of a single-table design, run on the emulator: one per entity and the table's own
for the items of none, in ``view``, ``merge`` and ``cdc`` mode, hard and soft deletes.

The changelog rows are built by hand (``_entity``/``_parts`` as the converter decides them, with
:meth:`Entities.classify`), so each statement is checked against a history chosen for its edge
cases: users, orders and order lines; a key whose ``type`` moves it from orders to users and
back; REMOVEs without an old image (``_entity`` NULL) whose state row is outside the MERGE's
window; items of no entity; a key deleted with no state at all; a hostile key value; INT64 parts
at -2^63 and 2^63-1, a NUMERIC part of 38 digits, TIMESTAMP and BOOL parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.bigquery.entity_mirrors import (
    ENTITY_COLUMN,
    PARTS_COLUMN,
    ScopedMirror,
    scoped_mirrors,
)
from ddb2bq.bigquery.generations import current_filter, ensure_table, record_complete
from ddb2bq.bigquery.mirror import merge_params
from ddb2bq.bigquery.sql import QueryResult, TableRef, run_query
from ddb2bq.bigquery.tables import schema_field
from ddb2bq.entities import Entities
from ddb2bq.records import make_seq
from ddb2bq.schema import TableLayout, build_layout

ENTITIES = Entities.from_config(
    [
        {
            "name": "orders",
            "match": {"pk": "USER#{user_id}", "sk": "ORDER#{ordered_on}#{order_id}",
                      "type": "Order"},
            "types": {"ordered_on": "DATE", "order_id": "INT64"},
            "promote": ["total"],
        },
        {"name": "users", "match": {"pk": "USER#{user_id}", "type": "User"}, "promote": ["email"]},
        {
            "name": "order_lines",
            "match": {"pk": "ORDER#{order_id}", "sk": "LINE#{line_no}"},
            "types": {"order_id": "INT64", "line_no": "INT64"},
            "promote": ["price"],
        },
        {
            "name": "ledger",
            "match": {"pk": "LEDGER#{amount}", "sk": "{at}#{settled}"},
            "types": {"amount": "NUMERIC", "at": "TIMESTAMP", "settled": "BOOL"},
        },
    ],
    table="shop",
    keys=["pk", "sk"],
)  # fmt: skip
PROMOTE = ["status"]  # [columns] promote: the table's own mirror
TYPES = {"status": "STRING", "total": "NUMERIC", "email": "STRING", "price": "NUMERIC"}
PROMOTED = {"shop": "status", "orders": "total", "users": "email", "order_lines": "price"}
MIRRORS = ("shop", "orders", "users", "order_lines", "ledger")

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=3)  # beyond the MERGE's 2-day look-back once a watermark is stored
HOSTILE = "x'; DROP TABLE y; --"
MAX, MIN = 2**63 - 1, -(2**63)
BIG = "12345678901234567890123456789.123456789"  # 38 digits, NUMERIC's whole precision
LEDGER = (f"LEDGER#{BIG}", "2026-11-30T10:00:00.000+02:00#true")
O42 = ("USER#42", f"ORDER#2026-11-30#{MAX}")
O7 = ("USER#7", f"ORDER#2026-01-02#{MIN}")
O9 = ("USER#9", "ORDER#2026-05-05#5")  # an order that becomes a user
O8 = ("USER#8", "ORDER#2026-06-06#6")  # the same, in a later batch
NOT_AN_ORDER = ("USER#1", "ORDER#2026-01-01#0981")  # 0981 is no canonical INT64 part


@dataclass(frozen=True)
class Step:
    """One change of the history: its ``seq``, and its time (``changed_at`` = ``ingested_at``)."""

    op: str
    key: tuple[str, str]
    seq: int
    at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def changed_at(self) -> datetime:
        return self.at + timedelta(seconds=self.seq)

    def item(self) -> dict[str, Any] | None:
        if self.op == "REMOVE" or self.attributes.get("keys_only"):
            return None
        return {"pk": self.key[0], "sk": self.key[1], **self.attributes}

    def row(self) -> dict[str, Any]:
        """The changelog row, as the converter writes it: a REMOVE (no old image) is classified
        by its keys, which only rules reading nothing but keys can match."""
        item = self.item()
        image = {a: {"N": str(v)} if isinstance(v, int | float) else {"S": v}
                 for a, v in (item or {"pk": self.key[0], "sk": self.key[1]}).items()}  # fmt: skip
        found = ENTITIES.classify(image) if item is not None or self.op == "REMOVE" else None
        when = self.changed_at.isoformat()
        row = {
            "event_id": f"{self.key}|{self.seq}", "op": self.op, "seq": make_seq(0, self.seq),
            "changed_at": when, "ingested_at": when, "pk": self.key[0], "sk": self.key[1],
            "is_ttl_delete": False, "item_types": None,
            "item": None if item is None else json.dumps(item),
            ENTITY_COLUMN: None if found is None else found[0].name,
            PARTS_COLUMN: None if found is None else json.dumps(found[1]),
        }  # fmt: skip
        for attribute in TYPES:
            value = (item or {}).get(attribute)
            row[attribute] = None if value is None else str(value)
        return row


def user(email: str) -> dict[str, Any]:
    return {"type": "User", "email": email}


def order(total: int) -> dict[str, Any]:
    return {"type": "Order", "total": total}


BATCH_1 = [  # three days ago, all merged by the first (full) run
    Step("INSERT", ("USER#42", "PROFILE"), 1, OLD, user("a@x.com")),
    Step("MODIFY", ("USER#42", "PROFILE"), 2, OLD, user("b@x.com")),
    Step("INSERT", (f"USER#{HOSTILE}", "PROFILE"), 3, OLD, user(HOSTILE)),
    Step("INSERT", O42, 10, OLD, order(5)),
    Step("INSERT", O7, 11, OLD, order(7)),
    Step("REMOVE", O7, 12, OLD),  # no old image, and orders read `type`: _entity is NULL
    Step("INSERT", O9, 20, OLD, order(1)),
    Step("MODIFY", O9, 21, OLD, user("m@x.com")),  # now a user
    Step("INSERT", O8, 25, OLD, order(2)),
    Step("INSERT", ("ORDER#981", "LINE#1"), 30, OLD, {"price": 12.5}),
    Step("INSERT", ("ORDER#981", "LINE#2"), 31, OLD, {"price": 1}),
    Step("REMOVE", ("ORDER#981", "LINE#2"), 32, OLD),  # order_lines, by its keys
    Step("INSERT", LEDGER, 40, OLD),
    Step("INSERT", ("USER#42", "SETTINGS"), 50, OLD, {"type": "Settings", "status": "dark"}),
    Step("INSERT", ("misc", "1"), 51, OLD, {"status": "x"}),
    Step("INSERT", ("misc", "2"), 52, OLD, {"status": "y"}),
    Step("REMOVE", ("misc", "2"), 53, OLD),
    Step("MODIFY", ("misc", "1"), 54, OLD, {"keys_only": True}),  # no new image: no state
    Step("INSERT", NOT_AN_ORDER, 60, OLD, order(3)),
    Step("REMOVE", ("ghost", "1"), 70, OLD),  # deleted with no state in the changelog
]
BATCH_2 = [  # half an hour ago; every state row of batch 1 is outside the MERGE's window now
    Step("MODIFY", O8, 80, NOW - timedelta(minutes=30), user("e@x.com")),  # orders -> users
    Step("REMOVE", ("USER#42", "PROFILE"), 81, NOW - timedelta(minutes=30)),  # _entity NULL
    Step("MODIFY", O42, 82, NOW - timedelta(minutes=30), {"type": "Refund", "total": 5}),
    Step("INSERT", ("ORDER#981", "LINE#3"), 83, NOW - timedelta(minutes=30), {"price": 3}),
    Step("REMOVE", ("ORDER#981", "LINE#1"), 84, NOW - timedelta(minutes=30)),
    Step("MODIFY", ("misc", "1"), 86, NOW - timedelta(minutes=30), {"status": "z"}),
    Step("REMOVE", O9, 87, NOW - timedelta(minutes=30)),  # a user now; _entity NULL
]
REPLAY = Step("INSERT", O9, 20, OLD, order(1))  # an old change delivered again, in batch 2
BATCH_3 = [
    Step("REMOVE", O8, 90, NOW - timedelta(minutes=10)),  # its state (80) is in the window
    Step("MODIFY", O42, 91, NOW - timedelta(minutes=10), order(9)),  # back to orders
]
STEPS = {s.seq: s for s in BATCH_1 + BATCH_2 + BATCH_3}


def expect(
    mirror: str, seq: int, *, state: int | None = None, deleted: bool | None = None, **parts: Any
) -> dict[str, Any]:
    """The row of ``mirror`` for the key changed last by ``seq``, its state that of ``state``."""
    last, kept = STEPS[seq], STEPS[state or seq]
    item = kept.item() or {}
    columns = {}
    if mirror in PROMOTED:
        value = item.get(PROMOTED[mirror])
        numeric = TYPES[PROMOTED[mirror]] == "NUMERIC" and value is not None
        columns[PROMOTED[mirror]] = Decimal(str(value)) if numeric else value
    row = {"pk": last.key[0], "sk": last.key[1], **parts, **columns, "item": item,
           "_seq": make_seq(0, seq), "_changed_at": last.changed_at}  # fmt: skip
    return row if deleted is None else {**row, "_deleted": deleted}


def expected_after_batch_1(soft: bool) -> dict[str, list[dict[str, Any]]]:
    live = False if soft else None
    rows = {
        "shop": [expect("shop", n, deleted=live) for n in (60, 50, 51)],
        "orders": [
            expect("orders", 10, user_id="42", ordered_on=date(2026, 11, 30), order_id=MAX,
                   deleted=live),
            expect("orders", 25, user_id="8", ordered_on=date(2026, 6, 6), order_id=6,
                   deleted=live),
        ],
        "users": [expect("users", 2, user_id="42", deleted=live),
                  expect("users", 21, user_id="9", deleted=live),
                  expect("users", 3, user_id=HOSTILE, deleted=live)],
        "order_lines": [expect("order_lines", 30, order_id=981, line_no=1, deleted=live)],
        "ledger": [expect("ledger", 40, amount=Decimal(BIG),
                          at=datetime(2026, 11, 30, 8, tzinfo=UTC), settled=True, deleted=live)],
    }  # fmt: skip
    if soft:  # deleted keys stay in the mirror of their state row, flagged
        rows["shop"].append(expect("shop", 53, state=52, deleted=True))
        rows["orders"].append(DELETED_O7)
        rows["order_lines"].append(DELETED_LINE_2)
    return {name: _ordered(found) for name, found in rows.items()}


def expected_at_the_end(soft: bool) -> dict[str, list[dict[str, Any]]]:
    live = False if soft else None
    rows = {
        "shop": [expect("shop", n, deleted=live) for n in (60, 50, 86)],
        "orders": [expect("orders", 91, user_id="42", ordered_on=date(2026, 11, 30),
                          order_id=MAX, deleted=live)],
        "users": [expect("users", 3, user_id=HOSTILE, deleted=live)],
        "order_lines": [expect("order_lines", 83, order_id=981, line_no=3, deleted=live)],
        "ledger": expected_after_batch_1(soft)["ledger"],
    }  # fmt: skip
    if soft:  # a REMOVE without _entity flags the key in the mirror of its state
        rows["shop"].append(expect("shop", 53, state=52, deleted=True))
        rows["orders"].append(DELETED_O7)
        rows["users"] += [expect("users", 81, state=2, user_id="42", deleted=True),
                          expect("users", 87, state=21, user_id="9", deleted=True),
                          expect("users", 90, state=80, user_id="8", deleted=True)]  # fmt: skip
        rows["order_lines"] += [
            DELETED_LINE_2,
            expect("order_lines", 84, state=30, order_id=981, line_no=1, deleted=True),
        ]
    return {name: _ordered(found) for name, found in rows.items()}


DELETED_O7 = expect("orders", 12, state=11, user_id="7", ordered_on=date(2026, 1, 2),
                    order_id=MIN, deleted=True)  # fmt: skip
DELETED_LINE_2 = expect("order_lines", 32, state=31, order_id=981, line_no=2, deleted=True)


def _ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["pk"], r["sk"]))


@dataclass
class Shop:
    """The changelog of table ``shop`` with ``_entity``/``_parts`` on the emulator, and its
    mirrors (:func:`scoped_mirrors`)."""

    client: bigquery.Client
    retry: Retry
    changes: TableRef
    layout: TableLayout
    mirrors: dict[str, ScopedMirror]

    def write(self, steps: list[Step]) -> None:
        errors = self.client.insert_rows_json(
            self.changes.api, [s.row() for s in steps], retry=self.retry, timeout=30
        )
        assert errors == []

    def query(self, sql: str, params: list[Any] | None = None) -> QueryResult:
        return run_query(self.client, sql, params or [], deadline=30)

    def rows(self, ref: TableRef) -> list[dict[str, Any]]:
        return self.query(f"SELECT * FROM {ref.sql} ORDER BY `pk`, `sk`").rows

    def views(self, generations: TableRef | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every mirror as a view (re-created), and what each holds."""
        for mirror in self.mirrors.values():
            self.query(mirror.view_ddl(self.changes, generations))
        return {name: self.rows(m.ref) for name, m in self.mirrors.items()}

    def merge_tables(self) -> dict[str, ScopedMirror]:
        """The same mirrors as ``merge`` tables, beside the views (``<name>_merged``)."""
        tables = {}
        for name, mirror in self.mirrors.items():
            ref = TableRef(mirror.ref.project, mirror.ref.dataset, f"{name}_merged")
            schema = [schema_field(c) for c in mirror.columns()]
            self.client.create_table(bigquery.Table(ref.api, schema=schema), retry=self.retry)
            tables[name] = ScopedMirror(ref, mirror.layout, mirror.scope)
        return tables

    def merge(
        self,
        tables: dict[str, ScopedMirror],
        watermark: datetime | None,
        generations: TableRef | None = None,
    ) -> dict[str, tuple[int, int, int]]:
        """One MERGE of each table, as :func:`ddb2bq.bigquery.mirror.run_merge` runs it (with
        ``watermark``, None: full), and what each inserted, updated and deleted."""
        watermark_us = None if watermark is None else int(watermark.timestamp() * 1_000_000)
        counts = {}
        for name, table in tables.items():
            result = self.query(table.merge_sql(self.changes), merge_params(watermark_us))
            zombies = 0
            if generations is not None:
                zombie_sql = (
                    f"DELETE FROM {table.ref.sql} WHERE NOT ({current_filter(generations)})"
                )
                zombies = self.query(zombie_sql).affected
            counts[name] = (result.inserted, result.updated, result.deleted + zombies)
        return counts


@pytest.fixture(params=["hard", "soft"])
def deletes(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def shop(
    deletes: str, bq_client: bigquery.Client, dataset: bigquery.Dataset, bq_retry: Retry
) -> Shop:
    """The changelog ``shop_changes``: the layout's schema plus ``_entity`` and ``_parts``."""
    layout = build_layout([("pk", "S"), ("sk", "S")], promoted=TYPES,
                          soft_deletes=deletes == "soft")  # fmt: skip
    changes = TableRef(dataset.project, dataset.dataset_id, "shop_changes")
    schema = [schema_field(c) for c in layout.changelog_columns()]
    names = {f.name for f in schema}  # the layout may carry the two columns already
    extra = [(ENTITY_COLUMN, "STRING"), (PARTS_COLUMN, "JSON")]
    schema += [bigquery.SchemaField(n, t) for n, t in extra if n not in names]
    table = bigquery.Table(changes.api, schema=schema)
    table.time_partitioning = bigquery.TimePartitioning(field="changed_at")
    bq_client.create_table(table, retry=bq_retry, timeout=30)
    own = TableRef(dataset.project, dataset.dataset_id, "shop")
    found = scoped_mirrors(layout, own, ENTITIES, promote=PROMOTE)
    return Shop(bq_client, bq_retry, changes, layout, {m.ref.table: m for m in found})


def test_each_entity_view_holds_the_keys_whose_state_is_of_that_entity(
    deletes: str, shop: Shop
) -> None:
    # GIVEN a changelog of users, orders, order lines, ledger entries and items of no entity
    soft = deletes == "soft"
    shop.write(BATCH_1)
    # WHEN the views are created and read
    views = shop.views()
    # THEN each holds exactly its entity's keys, typed parts exact (2^63-1, -2^63, 38 digits),
    # the order that became a user is a user, the hostile key is only data, the removed
    # keys are gone (hard) or flagged in their state's mirror (soft), the key deleted with no
    # state is nowhere, and the table's own mirror holds only the items of no entity
    assert views == expected_after_batch_1(soft)
    # AND the columns are the keys, the parts, the entity's promoted columns and the rest
    assert list(views["orders"][0]) == [
        "pk", "sk", "user_id", "ordered_on", "order_id", "total", "item", "_seq", "_changed_at",
        *(["_deleted"] if soft else []),
    ]  # fmt: skip
    # WHEN keys move between entities and are removed without an old image
    shop.write([*BATCH_2, REPLAY, *BATCH_3])
    # THEN the views follow each key's newest state
    assert {name: shop.rows(m.ref) for name, m in shop.mirrors.items()} == expected_at_the_end(soft)


def test_merge_mirrors_equal_the_views_after_a_full_run_and_incremental_runs(
    deletes: str, shop: Shop, dataset: bigquery.Dataset
) -> None:
    # GIVEN a merge table per mirror, beside the views
    tables = shop.merge_tables()
    shop.views()

    def merged() -> dict[str, list[dict[str, Any]]]:
        return {name: shop.rows(t.ref) for name, t in tables.items()}

    def views() -> dict[str, list[dict[str, Any]]]:
        return {name: shop.rows(m.ref) for name, m in shop.mirrors.items()}

    # WHEN the first batch is merged in full
    shop.write(BATCH_1)
    shop.merge(tables, watermark=None)
    # THEN each merge table equals its view
    assert merged() == views() == expected_after_batch_1(deletes == "soft")
    # WHEN keys move and are removed (their state rows outside the window) and an old change
    # is replayed, merged from a watermark two hours ago
    shop.write([*BATCH_2, REPLAY])
    second = shop.merge(tables, watermark=NOW - timedelta(hours=2))
    # THEN the tables equal the views again: the order that became a user left orders, the
    # refunded order left orders for the table's own mirror
    assert merged() == views()
    assert second["orders"][2] == 2  # USER#8 moved to users, USER#42's order became a refund
    # WHEN the last batch moves a key back and removes a key whose state is in the window
    shop.write(BATCH_3)
    third = shop.merge(tables, watermark=NOW - timedelta(minutes=20))
    # THEN the tables are the final state
    assert merged() == views() == expected_at_the_end(deletes == "soft")
    assert third["shop"][2] == 1  # the order went back to orders
    # AND running again over the same window changes nothing
    again = shop.merge(tables, watermark=NOW - timedelta(minutes=20))
    assert set(again.values()) == {(0, 0, 0)}
    assert merged() == expected_at_the_end(deletes == "soft")


def test_entity_mirrors_count_only_keys_of_the_newest_complete_generation(
    deletes: str, shop: Shop, dataset: bigquery.Dataset
) -> None:
    # GIVEN users of generation 0, and generation 1's snapshot holding only one of them
    generations = TableRef(dataset.project, dataset.dataset_id, "shop_generations")
    ensure_table(shop.client, generations)
    tables = shop.merge_tables()
    shop.write(BATCH_1)
    shop.merge(tables, watermark=None)
    snapshot = {**STEPS[3].row(), "seq": make_seq(1, 0), "event_id": "snapshot-3"}
    assert shop.client.insert_rows_json(shop.changes.api, [snapshot], retry=shop.retry) == []
    # WHEN generation 1 is complete
    record_complete(shop.client, generations, 1, 0)
    views = shop.views(generations)
    merges = shop.merge(tables, watermark=None, generations=generations)
    # THEN every mirror holds only the keys the new snapshot has: the others are zombies
    live = False if deletes == "soft" else None
    kept = expect("users", 3, user_id=HOSTILE, deleted=live)
    assert views["users"] == [{**kept, "_seq": make_seq(1, 0)}]
    assert all(views[name] == [] for name in MIRRORS if name != "users")
    assert {name: shop.rows(t.ref) for name, t in tables.items()} == views
    assert merges["users"] == (0, 1, 2)  # the snapshot's row, then the two zombies


@pytest.mark.parametrize("deletes", ["soft"])
def test_cdc_ddl_creates_each_entity_table_keyed_with_its_typed_parts(
    deletes: str, shop: Shop, dataset: bigquery.Dataset
) -> None:
    # GIVEN the mirrors of a table with entities WHEN their cdc DDL runs
    for mirror in shop.mirrors.values():
        shop.query(mirror.cdc_table_ddl())
    # THEN each entity's table has its typed parts after the keys, and the keys as primary key
    orders = shop.client.get_table(shop.mirrors["orders"].ref.api, retry=shop.retry)
    assert [(f.name, f.field_type) for f in orders.schema] == [
        ("pk", "STRING"), ("sk", "STRING"), ("user_id", "STRING"), ("ordered_on", "DATE"),
        ("order_id", "INTEGER"), ("total", "NUMERIC"), ("item", "JSON"), ("_seq", "STRING"),
        ("_changed_at", "TIMESTAMP"), ("_deleted", "BOOLEAN"),
    ]  # fmt: skip
    assert orders.table_constraints.primary_key.columns == ["pk", "sk"]
    ledger = shop.client.get_table(shop.mirrors["ledger"].ref.api, retry=shop.retry)
    assert [f.field_type for f in ledger.schema][2:5] == ["NUMERIC", "TIMESTAMP", "BOOLEAN"]
    # AND the table's own mirror keeps only its own promoted column
    own = shop.client.get_table(shop.mirrors["shop"].ref.api, retry=shop.retry)
    assert [f.name for f in own.schema] == ["pk", "sk", "status", "item", "_seq", "_changed_at",
                                            "_deleted"]  # fmt: skip
    assert {t.table_id for t in shop.client.list_tables(dataset, retry=shop.retry)} >= set(MIRRORS)
