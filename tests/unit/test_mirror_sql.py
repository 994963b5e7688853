"""The mirror's SQL and DDL, as text (the integration tests run every statement on the emulator)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from ddb2bq.bigquery.mirror import (
    MAX_LOOKBACK,
    cdc_table_ddl,
    clustering_columns,
    merge_params,
    merge_sql,
    run_merge,
    view_ddl,
    view_sql,
)
from ddb2bq.bigquery.sql import TableRef
from ddb2bq.exceptions import ConfigError
from ddb2bq.schema import build_layout

CHANGES = TableRef("my-project", "dynamodb", "orders_changes")
MIRROR = TableRef("my-project", "dynamodb", "orders")


def layout(soft: bool = False, **promoted: str):  # type: ignore[no-untyped-def]
    return build_layout([("customer", "S"), ("order", "N")], promoted=promoted, soft_deletes=soft)


def test_view_keeps_the_newest_change_per_key_and_hides_hard_deletes() -> None:
    # GIVEN hard deletes WHEN the view's query is built
    sql = view_sql(layout(status="STRING"), CHANGES)
    # THEN it ranks each key's changes by seq and drops keys whose newest change is a REMOVE
    assert "FROM `my-project`.`dynamodb`.`orders_changes`" in sql
    assert (
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY `customer`, `order` ORDER BY `seq` DESC) = 1"
        in sql
    )
    assert sql.rstrip().endswith("WHERE `op` != 'REMOVE'")
    # AND a change without a new image (KEYS_ONLY stream) is not a state
    assert "(`op` = 'REMOVE' OR `item` IS NOT NULL)" in sql
    # AND the columns are the mirror's, in order
    first_line = sql.splitlines()[0]
    assert first_line == ("SELECT `customer`, `order`, `status`, `item`, `_seq`, `_changed_at`")


def test_soft_view_flags_deletes_and_keeps_the_last_known_state() -> None:
    # GIVEN soft deletes WHEN the view's query is built
    sql = view_sql(layout(soft=True, status="STRING"), CHANGES)
    # THEN the newest change gives _seq/_changed_at/_deleted, the newest non-REMOVE the state
    assert "`op` = 'REMOVE' AS `_deleted`" in sql
    assert "WHERE `op` != 'REMOVE' AND `item` IS NOT NULL" in sql
    assert "LEFT JOIN `state` ON `latest`.`customer` = `state`.`customer`" in sql
    assert "`state`.`status`, `state`.`item`" in sql
    assert sql.splitlines()[0].endswith("`_seq`, `_changed_at`, `_deleted`")


def test_view_ddl_replaces_the_view() -> None:
    ddl = view_ddl(layout(), CHANGES, MIRROR)
    assert ddl.startswith("CREATE OR REPLACE VIEW `my-project`.`dynamodb`.`orders` AS\nSELECT ")


def test_merge_applies_only_newer_changes_of_touched_keys_with_partition_pruning() -> None:
    # GIVEN hard deletes WHEN the MERGE is built
    sql = merge_sql(layout(status="STRING"), CHANGES, MIRROR)
    # THEN it reads a changed_at window (partition pruning) of keys touched since the watermark
    assert "WHERE `changed_at` >= @since AND" in sql
    assert "AND MAX(`ingested_at`) OVER (PARTITION BY `customer`, `order`) > @after" in sql
    # AND applies a change only when its seq is newer than the mirror's
    assert (
        "WHEN MATCHED AND `source`.`_seq` > `target`.`_seq` AND `source`.`op` = 'REMOVE' THEN DELETE"
        in sql
    )
    assert (
        "WHEN MATCHED AND `source`.`_seq` > `target`.`_seq` THEN UPDATE SET `status` = `source`.`status`"
        in sql
    )
    assert "WHEN NOT MATCHED AND `source`.`op` != 'REMOVE' THEN" in sql
    assert (
        "ON `target`.`customer` = `source`.`customer` AND `target`.`order` = `source`.`order`"
        in sql
    )
    # AND no value is pasted into the text: times travel as parameters
    assert not re.search(r"TIMESTAMP\s*'", sql)


def test_soft_merge_flags_deletes_and_keeps_the_mirror_state_when_the_window_has_none() -> None:
    sql = merge_sql(layout(soft=True, status="STRING"), CHANGES, MIRROR)
    assert "DELETE" not in sql
    assert "`item` = IF(`source`.`item` IS NOT NULL, `source`.`item`, `target`.`item`)" in sql
    assert "`_deleted` = `source`.`_deleted`" in sql
    assert "WHERE `changed_at` >= @since AND `op` != 'REMOVE' AND `item` IS NOT NULL" in sql


def test_aliases_never_equal_a_column_name() -> None:
    # GIVEN attributes named like the SQL's own aliases (attribute names are user data)
    hostile = layout(soft=True, target="STRING", source="STRING", latest="STRING", state="INT64")
    # WHEN the MERGE is built THEN the aliases move aside and the columns keep their names
    sql = merge_sql(hostile, CHANGES, MIRROR)
    assert "MERGE `my-project`.`dynamodb`.`orders` AS `target_`" in sql
    assert ") AS `source_`" in sql
    assert "WITH `latest_` AS (" in sql
    assert "), `state_` AS (" in sql
    assert (
        "`target` = IF(`source_`.`item` IS NOT NULL, `source_`.`target`, `target_`.`target`)" in sql
    )


def test_hostile_attribute_names_reach_sql_only_as_quoted_identifiers() -> None:
    # GIVEN promoted attributes named with SQL and reserved words
    hostile = build_layout(
        [("select", "S")], promoted={"x`; DROP TABLE y; --": "STRING", "from": "INT64"}
    )
    # WHEN each statement is built THEN the text never holds them unquoted
    for sql in (
        view_sql(hostile, CHANGES),
        merge_sql(hostile, CHANGES, MIRROR),
        cdc_table_ddl(hostile, MIRROR),
    ):
        assert "DROP TABLE" not in sql  # the column is named x____DROP_TABLE_y____<hash>
        assert re.search(r"(?<!`)\bfrom\b(?!`)", sql.replace("FROM", "")) is None
        assert "`select`" in sql


def test_cdc_ddl_declares_the_primary_key_not_enforced_and_max_staleness() -> None:
    # GIVEN a soft-delete layout WHEN the cdc mirror's DDL is built
    ddl = cdc_table_ddl(layout(soft=True, tags="ARRAY<STRING>"), MIRROR, max_staleness_minutes=30)
    # THEN it creates the table once, keyed (not enforced), clustered, with max_staleness
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS `my-project`.`dynamodb`.`orders` (\n")
    assert "  PRIMARY KEY (`customer`, `order`) NOT ENFORCED\n)" in ddl
    assert "CLUSTER BY `customer`, `order`" in ddl
    assert ddl.endswith("OPTIONS (max_staleness = INTERVAL 30 MINUTE)")
    assert "  `tags` ARRAY<STRING>,\n" in ddl
    assert "  `_deleted` BOOL,\n" in ddl


def test_bytes_keys_are_not_clustered() -> None:
    # GIVEN a BYTES hash key (BigQuery cannot cluster by BYTES) and a STRING range key
    keyed = build_layout([("blob", "B"), ("name", "S")])
    # THEN only the STRING key clusters, and the DDL says so
    assert clustering_columns(keyed) == ["name"]
    assert "CLUSTER BY `name`\n" in cdc_table_ddl(keyed, MIRROR)
    assert "CLUSTER BY" not in cdc_table_ddl(build_layout([("blob", "B")]), MIRROR)


@pytest.mark.parametrize(
    ("watermark", "since", "after"),
    [
        (None, datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)),
        (
            1_700_000_000_000_000,
            datetime(2023, 11, 12, 22, 13, 20, tzinfo=UTC),
            datetime(2023, 11, 14, 21, 43, 20, tzinfo=UTC),
        ),
    ],
)
def test_merge_params_reach_back_from_the_watermark(
    watermark: int | None, since: datetime, after: datetime
) -> None:
    # GIVEN the stored watermark (None: first run) WHEN the MERGE parameters are made
    params = {p.name: p for p in merge_params(watermark)}
    # THEN @since is 2 days and @after 30 minutes before it, both TIMESTAMP parameters
    assert (params["since"].value, params["after"].value) == (since, after)
    assert {p.type_ for p in params.values()} == {"TIMESTAMP"}


def test_merge_params_take_a_custom_window() -> None:
    params = merge_params(0, lookback=timedelta(hours=1), overlap=timedelta(minutes=10))
    assert [p.value for p in params] == [
        datetime(1969, 12, 31, 23, 0, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 50, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("lookback", "overlap", "message"),
    [
        (timedelta(hours=-48), timedelta(minutes=30), "look-back is -2 days"),
        (timedelta(0), timedelta(minutes=30), "look-back is 0:00:00"),
        (timedelta(hours=2), timedelta(0), "overlap is 0:00:00"),
        (timedelta(hours=2), timedelta(minutes=-5), "overlap is -1 day, 23:55:00"),
        (timedelta(minutes=10), timedelta(minutes=30), "shorter than its overlap"),
        (MAX_LOOKBACK + timedelta(days=1), timedelta(minutes=30), "run `ddb2bq merge --full`"),
    ],
)
def test_a_window_that_would_skip_rows_is_refused(
    lookback: timedelta, overlap: timedelta, message: str
) -> None:
    # GIVEN a look-back or overlap that does not reach behind the watermark (or overflows)
    # WHEN the MERGE parameters are made  THEN it is a ConfigError saying what is wrong
    with pytest.raises(ConfigError, match=re.escape(message)):
        merge_params(1_700_000_000_000_000, lookback=lookback, overlap=overlap)


def test_state_as_of_a_time_filters_the_changelog_by_changed_at() -> None:
    # GIVEN soft deletes WHEN the state as of @as_of is asked for
    sql = view_sql(layout(soft=True), CHANGES, as_of=True)
    # THEN both the newest change and the last state are taken from changes made until then
    assert "WHERE `changed_at` <= @as_of AND (`op` = 'REMOVE' OR `item` IS NOT NULL)" in sql
    assert "WHERE `changed_at` <= @as_of AND `op` != 'REMOVE' AND `item` IS NOT NULL" in sql


class _Untouchable:
    """A BigQuery client that must not be called."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"the client was called ({name}) before the window was checked")


@pytest.mark.parametrize(
    "window",
    [{"lookback": timedelta(hours=-48)}, {"overlap": timedelta(0)}, {"lookback": timedelta(0)}],
)
def test_run_merge_refuses_a_bad_window_before_touching_bigquery(
    window: dict[str, timedelta],
) -> None:
    # GIVEN the library API called with a look-back or overlap that would skip rows
    # WHEN run_merge runs  THEN it is a ConfigError, and nothing reached BigQuery (the
    # watermark label was not read, so it cannot have moved)
    with pytest.raises(ConfigError, match="The MERGE"):
        run_merge(_Untouchable(), layout(), CHANGES, MIRROR, **window)  # type: ignore[arg-type]
