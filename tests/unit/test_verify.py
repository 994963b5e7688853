"""verify without servers: the canonical typed hash, the bucket comparison, the re-check, the
mirror's keyed query and the report, on in-memory fakes."""

from __future__ import annotations

import base64
import random
import tempfile
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb2bq.bigquery.sql import TableRef
from ddb2bq.bigquery.tables import TableRefs
from ddb2bq.cli import main
from ddb2bq.config import Config, RunnerConfig, TargetConfig
from ddb2bq.schema import build_layout
from ddb2bq.verify import Difference, VerifyReport, recheck_wait
from ddb2bq.verify.buckets import Buckets, Comparison, Entry, bucket_count, compare
from ddb2bq.verify.canonical import (
    canonical,
    first_difference,
    item_digest,
    key_digest,
    key_from_text,
    key_text,
    number_text,
)
from ddb2bq.verify.mirror import MirrorItem, mirror_items_for_keys, mirror_sql
from ddb2bq.verify.recheck import BATCH, classify, recheck
from ddb2bq.verify.table import get_items, scan_items
from ddb2bq.verify.verifier import _Sample
from tests.strategies import attribute_values, items, to_event_json
from tests.strategies import number_text as number_texts

# --- an independent oracle: DynamoDB's equality of two values, written without canonical ----


def same(a: Any, b: Any) -> bool:
    ((tag_a, a_raw),) = a.items()
    ((tag_b, b_raw),) = b.items()
    if tag_a != tag_b:
        return False
    if tag_a == "N":
        return Decimal(a_raw) == Decimal(b_raw)
    if tag_a == "B":
        return as_bytes(a_raw) == as_bytes(b_raw)
    if tag_a == "NS":
        return {Decimal(x) for x in a_raw} == {Decimal(x) for x in b_raw}
    if tag_a == "SS":
        return set(a_raw) == set(b_raw)
    if tag_a == "BS":
        return {as_bytes(x) for x in a_raw} == {as_bytes(x) for x in b_raw}
    if tag_a == "L":
        return len(a_raw) == len(b_raw) and all(map(same, a_raw, b_raw))
    if tag_a == "M":
        return a_raw.keys() == b_raw.keys() and all(same(a_raw[k], b_raw[k]) for k in a_raw)
    return bool(a_raw == b_raw and type(a_raw) is type(b_raw))


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else base64.b64decode(value)


def respell_number(text: str, zeros: int) -> str:
    """The same number spelled otherwise: ``zeros`` more trailing zeros, in exponent form."""
    sign, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    spelled = "".join(map(str, digits)) + "0" * zeros
    return ("-" if sign else "") + spelled + f"E{exponent - zeros}"


def respell(value: Any, rng: random.Random) -> Any:
    """An equal value in another spelling: numbers, set order, map order, binary as base64."""
    ((tag, raw),) = value.items()
    if tag == "N":
        return {"N": respell_number(raw, rng.randrange(3))}
    if tag == "NS":
        members = [respell_number(n, rng.randrange(3)) for n in raw]
        rng.shuffle(members)
        return {"NS": members}
    if tag in ("SS", "BS"):
        members = [base64.b64encode(m).decode() if isinstance(m, bytes) else m for m in raw]
        rng.shuffle(members)
        return {tag: members}
    if tag == "B":
        return {"B": base64.b64encode(raw).decode()}
    if tag == "L":
        return {"L": [respell(v, rng) for v in raw]}
    if tag == "M":
        names = list(raw)
        rng.shuffle(names)
        return {"M": {name: respell(raw[name], rng) for name in names}}
    return value


# --- the canonical typed hash --------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"N": "1.50"}, {"N": "1.5"}),
        ({"N": "-0"}, {"N": "0"}),
        ({"N": "0E+5"}, {"N": "-0.000"}),
        ({"N": "1E+2"}, {"N": "100"}),
        ({"N": "1.5E-130"}, {"N": "15E-131"}),
        ({"NS": ["2", "1.0"]}, {"NS": ["1", "2.00"]}),
        ({"SS": ["b", "a"]}, {"SS": ["a", "b"]}),
        ({"B": b"\x00\xff"}, {"B": "AP8="}),
        ({"BS": [b"\x01", b"\x00"]}, {"BS": ["AA==", "AQ=="]}),
        ({"M": {"a": {"N": "1"}, "b": {"S": "x"}}}, {"M": {"b": {"S": "x"}, "a": {"N": "1.0"}}}),
    ],
)
def test_equal_values_have_one_hash(a: Any, b: Any) -> None:
    # GIVEN two spellings of the same DynamoDB value  THEN one digest
    assert item_digest({"v": a}) == item_digest({"v": b})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"N": "1"}, {"S": "1"}),
        ({"N": "1"}, {"NS": ["1"]}),
        ({"N": "1"}, {"L": [{"N": "1"}]}),
        ({"SS": ["1"]}, {"NS": ["1"]}),
        ({"SS": ["a"]}, {"L": [{"S": "a"}]}),
        ({"S": "AA=="}, {"B": "AA=="}),
        ({"BOOL": True}, {"N": "1"}),
        ({"NULL": True}, {"BOOL": False}),
        ({"M": {}}, {"L": []}),
        ({"L": [{"N": "1"}, {"N": "2"}]}, {"L": [{"N": "2"}, {"N": "1"}]}),
        (
            {"N": "12345678901234567890123456789012345678"},
            {"N": "12345678901234567890123456789012345679"},
        ),
        ({"N": "1E-130"}, {"N": "2E-130"}),
        ({"N": "-1"}, {"N": "1"}),
        ({"S": "a"}, {"S": "a "}),
    ],
)
def test_different_values_have_different_hashes(a: Any, b: Any) -> None:
    # GIVEN values that differ in type or value  THEN different digests
    assert item_digest({"v": a}) != item_digest({"v": b})


def test_an_absent_attribute_differs_from_a_null_one() -> None:
    assert item_digest({"a": {"S": "x"}}) != item_digest({"a": {"S": "x"}, "b": {"NULL": True}})


@settings(max_examples=300)
@given(attribute_values, st.randoms(use_true_random=False))
def test_a_value_and_any_respelling_of_it_have_one_hash(value: Any, rng: random.Random) -> None:
    # GIVEN any DynamoDB value and the same value spelled otherwise (numbers, orders, base64)
    respelled = respell(value, rng)
    assert same(value, respelled)
    # THEN their digests are equal, in boto3's form and in event JSON alike
    assert item_digest({"v": value}) == item_digest({"v": respelled})
    assert item_digest({"v": value}) == item_digest({"v": to_event_json(value)})


@settings(max_examples=500)
@given(attribute_values, attribute_values)
def test_two_values_share_a_hash_exactly_when_dynamodb_calls_them_equal(a: Any, b: Any) -> None:
    assert (item_digest({"v": a}) == item_digest({"v": b})) == same(a, b)


@settings(max_examples=300)
@given(number_texts(), st.integers(0, 3))
def test_number_text_is_the_exact_value_in_one_spelling(text: str, zeros: int) -> None:
    canonical_text = number_text(text)
    assert canonical_text is not None
    assert Decimal(canonical_text) == Decimal(text)
    assert number_text(canonical_text) == canonical_text
    assert number_text(respell_number(text, zeros)) == canonical_text


@settings(max_examples=200)
@given(items())
def test_key_text_reads_back_as_the_key(item: dict[str, Any]) -> None:
    key = {"pk": item["pk"], "sk": item["sk"]}
    assert key_from_text(key_text(key)) == key
    assert key_digest(key_from_text(key_text(key))) == key_digest(key)


@pytest.mark.parametrize(
    "value",
    [
        {"N": "abc"},
        {"N": "NaN"},
        {"X": 1},
        {"S": 1},
        {"NULL": False},
        {"B": "@@"},
        {"S": "a", "N": "1"},
    ],
)
def test_a_malformed_value_hashes_to_no_valid_item_and_does_not_raise(value: Any) -> None:
    digest = item_digest({"v": value})
    assert digest not in {item_digest({"v": v}) for v in ({"N": "0"}, {"S": "1"}, {"NULL": True})}
    with pytest.raises(ValueError, match="is not a DynamoDB attribute value"):
        canonical(value)


def test_first_difference_names_the_deepest_path_that_differs() -> None:
    table = {"m": {"M": {"a": {"L": [{"N": "1"}, {"M": {"z": {"BOOL": True}}}]}}}, "s": {"S": "x"}}
    mirror = {
        "m": {"M": {"a": {"L": [{"N": "1.0"}, {"M": {"z": {"BOOL": False}}}]}}},
        "s": {"S": "x"},
    }
    assert first_difference(table, mirror) == "m.a[1].z"
    assert first_difference(table, {"s": {"S": "x"}}) == "m"
    assert first_difference({"n": {"N": "1"}}, {"n": {"S": "1"}}) == "n"
    assert first_difference(table, table) == ""


# --- buckets: flat-memory comparison --------------------------------------------------------

SIDES = st.dictionaries(
    st.text(max_size=12),
    st.tuples(
        # the table's digest (None: absent), then the mirror's copies (b"": unreadable)
        st.one_of(st.none(), st.sampled_from([b"h1", b"h2"])),
        st.lists(st.sampled_from([b"h1", b"h2", b""]), max_size=2),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(SIDES, st.sampled_from([1, 3, 16]))
def test_buckets_find_what_a_whole_table_in_memory_would(
    sides: dict[str, tuple[bytes | None, list[bytes]]], count: int
) -> None:
    # GIVEN both sides' entries, spread over `count` bucket files (many flushes at count 1)
    expected = Comparison()
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        table, mirror = Buckets(folder, "table", count), Buckets(folder, "mirror", count)
        for text, (wanted, copies) in sides.items():
            key = {"pk": {"S": text}}
            entry_key, key_json = key_digest(key), key_text(key)
            if wanted is not None:
                table.add(Entry(entry_key, wanted, key_json))
            for held in copies:
                mirror.add(Entry(entry_key, held, key_json))
            kind = oracle(wanted, copies)
            if kind is None:
                continue
            if kind == "equal":
                expected.equal += 1
            else:
                setattr(expected, kind, getattr(expected, kind) + 1)
                found[key_json] = kind
        # WHEN they are compared bucket by bucket
        result = compare(table, mirror)
    # THEN the counts and each difference are those of the naive comparison
    counts = (result.equal, result.missing, result.extra, result.different)
    assert counts == (expected.equal, expected.missing, expected.extra, expected.different)
    assert {d.key_json: d.kind for d in result.differences} == found


def oracle(wanted: bytes | None, copies: list[bytes]) -> str | None:
    """What the comparison must say of one key; None when neither side holds it."""
    if len(copies) > 1:
        return "different"
    if not copies:
        return None if wanted is None else "missing"
    if wanted is None:
        return "extra"
    return "equal" if copies[0] == wanted else "different"


def test_bucket_count_aims_at_a_bounded_bucket() -> None:
    assert bucket_count(0) == 16
    assert bucket_count(1_000_000) == 32
    assert bucket_count(10**12) == 4096


def test_a_sample_is_the_same_keys_for_a_seed_and_about_its_fraction() -> None:
    keys = [key_digest({"pk": {"N": str(n)}}) for n in range(4000)]
    kept = {k for k in keys if _Sample(0.25, 7).keeps(k)}
    assert 800 < len(kept) < 1200
    assert kept == {k for k in keys if _Sample(0.25, 7).keeps(k)}
    assert kept != {k for k in keys if _Sample(0.25, 8).keeps(k)}
    assert all(_Sample(1.0, 7).keeps(k) for k in keys)


# --- the DynamoDB side, on a fake client ---------------------------------------------------


class FakeDynamoDB:
    """Scan by segment (pages of ``Limit``), BatchGetItem that leaves keys unprocessed once."""

    def __init__(self, count: int, *, failing_segment: int | None = None) -> None:
        self.items = [{"pk": {"S": f"k{n}"}, "n": {"N": str(n)}} for n in range(count)]
        self.failing_segment = failing_segment
        self.requests: list[dict[str, Any]] = []

    def scan(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        segment, total = request.get("Segment", 0), request.get("TotalSegments", 1)
        if segment == self.failing_segment:
            raise RuntimeError("the segment failed")
        mine = [i for i in self.items if int(i["n"]["N"]) % total == segment]
        start = request.get("ExclusiveStartKey")
        at = (
            0
            if start is None
            else next(n for n, i in enumerate(mine) if i["pk"] == start["pk"]) + 1
        )
        page = mine[at : at + request["Limit"]]
        more = at + request["Limit"] < len(mine)
        return {"Items": page, **({"LastEvaluatedKey": {"pk": page[-1]["pk"]}} if more else {})}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        self.requests.append(request)
        keys = request["Keys"]
        assert len(keys) <= 100
        served, unprocessed = (keys, []) if len(self.requests) > 1 else (keys[:1], keys[1:])
        found = [i for i in self.items if {"pk": i["pk"]} in served]
        left = {table: {**request, "Keys": unprocessed}} if unprocessed else {}
        return {"Responses": {table: found}, "UnprocessedKeys": left}


@pytest.mark.parametrize("segments", [1, 3])
def test_a_parallel_scan_yields_every_item_once(segments: int) -> None:
    dynamodb = FakeDynamoDB(250)
    found = list(scan_items(dynamodb, "t", segments=segments, limit=40))
    assert sorted(i["pk"]["S"] for i in found) == sorted(i["pk"]["S"] for i in dynamodb.items)
    assert all(("Segment" in r) == (segments > 1) for r in dynamodb.requests)


def test_a_failing_segment_fails_the_scan() -> None:
    with pytest.raises(RuntimeError, match="the segment failed"):
        list(scan_items(FakeDynamoDB(50, failing_segment=1), "t", segments=2, limit=5))


def test_get_items_reads_unprocessed_keys_again_and_each_key_once() -> None:
    dynamodb = FakeDynamoDB(5)
    keys = [{"pk": {"S": f"k{n}"}} for n in (0, 1, 2, 2, 9)]
    found = get_items(dynamodb, "t", keys, sleep=lambda _: None)
    assert sorted(i["pk"]["S"] for i in found) == ["k0", "k1", "k2"]
    assert [len(r["Keys"]) for r in dynamodb.requests] == [4, 3]
    assert all(r["ConsistentRead"] for r in dynamodb.requests)


# --- the re-check ----------------------------------------------------------------------------


def key(name: str) -> dict[str, Any]:
    return {"pk": {"S": name}}


def test_classify_settles_what_now_agrees_and_reclassifies_the_rest() -> None:
    a = {**key("a"), "n": {"N": "1"}}
    text = key_text(key("a"))
    assert classify(text, a, [MirrorItem(key("a"), {**key("a"), "n": {"N": "1.00"}})]) is None
    assert classify(text, None, []) is None
    assert classify(text, a, []) == Difference("missing", text)
    assert classify(text, None, [MirrorItem(key("a"), a)]) == Difference("extra", text)
    twice = classify(text, a, [MirrorItem(key("a"), a)] * 2)
    assert twice == Difference("different", text, "the mirror holds it 2 times")
    unreadable = classify(text, a, [MirrorItem(key("a"), None)])
    assert unreadable == Difference("different", text, "the mirror's item cannot be read")
    changed = classify(text, a, [MirrorItem(key("a"), {**key("a"), "n": {"S": "1"}})])
    assert changed == Difference("different", text, "attribute 'n' differs")


def test_recheck_reads_both_sides_by_key_in_batches() -> None:
    # GIVEN 250 differences: now even keys agree, odd keys are still missing from the mirror
    differences = [Difference("missing", key_text(key(str(n)))) for n in range(250)]
    calls: list[tuple[str, int]] = []

    def read_table(keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(("table", len(keys)))
        return [{**k, "v": {"N": "1"}} for k in keys]

    def read_mirror(keys: Sequence[dict[str, Any]]) -> list[MirrorItem]:
        calls.append(("mirror", len(keys)))
        even = [k for k in keys if int(k["pk"]["S"]) % 2 == 0]
        return [MirrorItem(k, {**k, "v": {"N": "1.0"}}) for k in even]

    # WHEN they are re-checked
    outcomes = list(recheck(iter(differences), ["pk"], read_table, read_mirror))
    # THEN the even ones settled, the odd ones persist, read BATCH keys at a time
    settled = [before for before, now in outcomes if now is None]
    assert len(settled) == 125
    assert all(now == before for before, now in outcomes if now is not None)
    assert calls == [(side, n) for n in (BATCH, BATCH, 50) for side in ("table", "mirror")]


def test_recheck_wait_adds_what_the_mirror_mode_adds() -> None:
    assert recheck_wait(Config())[0] == 30
    merge = Config(target=TargetConfig(mirror="merge"), runner=RunnerConfig(merge_interval=60))
    assert recheck_wait(merge) == (90, recheck_wait(merge)[1])
    assert "merge_interval" in recheck_wait(merge)[1]
    assert recheck_wait(Config(target=TargetConfig(mirror="cdc")))[0] == 30 + 15 * 60


# --- the mirror's SQL, on a fake client ---------------------------------------------------------


class FakeJob:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def result(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


class FakeClient:
    """Records each query and its parameters; answers with the rows given."""

    project = "p"

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.queries: list[tuple[str, dict[str, tuple[str, Any]]]] = []

    def query(self, sql: str, job_config: Any, **kwargs: Any) -> FakeJob:
        params = {p.name: (p.type_, p.value) for p in job_config.query_parameters}
        self.queries.append((sql, params))
        return FakeJob(self.rows)


REFS = TableRefs(TableRef("p", "d", "t_changes"), TableRef("p", "d", "t"))


def test_the_keyed_query_passes_each_key_typed_as_its_column() -> None:
    # GIVEN a table keyed by a binary hash key with a hostile name and a number range key
    layout = build_layout([("the key`", "B"), ("select", "N")])
    client = FakeClient([])
    keys = [{"the key`": {"B": b"\x01"}, "select": {"N": "1.50"}}]
    # WHEN the mirror rows of those keys are asked for
    mirror_items_for_keys(client, REFS, layout, {"the key`": "B", "select": "N"}, keys)
    # THEN the columns are the layout's, quoted, and the values typed parameters
    ((sql, params),) = client.queries
    hash_column, range_column = (c.name for c in layout.keys)
    assert f"(`{hash_column}` = @k0_0 AND `{range_column}` = @k1_0)" in sql
    assert params == {"k0_0": ("BYTES", b"\x01"), "k1_0": ("BIGNUMERIC", Decimal("1.5"))}


def test_a_key_no_column_can_hold_is_not_queried() -> None:
    layout = build_layout([("id", "N")], key_column_types={"id": "INT64"})
    client = FakeClient([])
    found = mirror_items_for_keys(client, REFS, layout, {"id": "N"}, [{"id": {"N": "1.5"}}])
    assert found == []
    assert client.queries == []


def test_a_mirror_row_without_its_image_keeps_its_key_from_the_columns() -> None:
    layout = build_layout([("id", "B"), ("n", "N")])
    image = {"id": {"B": "AQ=="}, "n": {"N": "2"}, "x": {"SS": ["a"]}}
    lean = {"item": {"id": "AQ==", "n": 2, "x": ["a"]}, "item_types": {"id": "B", "x": "SS"}}
    rows = [
        {"_k0": b"\x01", "_k1": Decimal("2.000000000000000000"), **lean},
        {"_k0": b"\x02", "_k1": Decimal("1.500000000000000000"), "item": None},
    ]
    client = FakeClient(rows)
    keys = [{"id": {"B": b"\x01"}, "n": {"N": "2"}}, {"id": {"B": b"\x02"}, "n": {"N": "1.5"}}]
    found = mirror_items_for_keys(client, REFS, layout, {"id": "B", "n": "N"}, keys)
    assert found[0] == MirrorItem({"id": {"B": "AQ=="}, "n": {"N": "2"}}, image)
    assert found[1] == MirrorItem({"id": {"B": b"\x02"}, "n": {"N": "1.5"}}, None)


def test_with_soft_deletes_the_mirror_query_skips_deleted_rows() -> None:
    soft = mirror_sql(build_layout([("pk", "S")], soft_deletes=True), REFS)
    hard = mirror_sql(build_layout([("pk", "S")]), REFS)
    assert "`_deleted` IS NOT TRUE" in soft
    assert "_deleted" not in hard


# --- the report and the command line ---------------------------------------------------------


def test_the_report_lists_the_first_keys_of_each_kind_and_counts_all() -> None:
    report = VerifyReport("orders", "p.d.orders", table_items=30, mirror_rows=5, equal=5)
    for n in range(25):
        report.add(Difference("missing", key_text(key(str(n)))))
    lines = report.lines()
    assert lines[0] == (
        "orders: 30 items in the table, 5 rows in p.d.orders: 5 equal, 25 missing, 0 extra, "
        "0 different."
    )
    assert lines[1] == "missing from the mirror (25):"
    assert lines[2:22] == [f"  {key_text(key(str(n)))}" for n in range(20)]
    assert lines[22:] == ["  ... and 5 more"]
    assert not report.equal_everywhere


@pytest.mark.parametrize(
    "option",
    [["--sample", "0"], ["--sample", "1.5"], ["--sample", "x"], ["--segments", "0"],
     ["--recheck-after", "-1"], ["--recheck-after", "inf"]],
)  # fmt: skip
def test_bad_options_exit_2_with_a_message(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", *option])
    assert exit_info.value.code == 2
    assert option[0] in capsys.readouterr().err
