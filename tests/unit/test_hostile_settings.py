"""Settings and options that are accepted today but wrong, met where a user meets them: the
``ddb2bq`` command line. Each is refused with exit code 2, without a traceback, by a message
that names the setting (or option, or file) and says what to do."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from ddb2bq.bigquery.mirror import DEFAULT_OVERLAP, MAX_LOOKBACK
from ddb2bq.cli import main
from ddb2bq.cli.tables import LOOKBACK_HOURS

FIXTURES = Path(__file__).parent.parent / "fixtures"
BASE = {
    "source": {"table": '"orders"'},
    "target": {"project": '"analytics-prod"', "dataset": '"dynamodb"'},
}


@pytest.fixture(autouse=True)
def _no_ddb2bq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the file configures these runs (a developer's DDB2BQ_* variables would add to it),
    and ``convert`` reads the AWS sample event on stdin."""
    import os  # noqa: PLC0415

    for name in [n for n in os.environ if n.startswith("DDB2BQ_")]:
        monkeypatch.delenv(name)
    event = (FIXTURES / "aws_sample_event.json").read_text(encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(event))


def write(tmp_path: Path, settings: dict[str, dict[str, str]]) -> str:
    """A ddb2bq.toml of BASE with ``settings`` (TOML values as text) laid over it."""
    sections = {name: dict(values) for name, values in BASE.items()}
    for section, values in settings.items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines += [f"[{section}]", *(f"{key} = {value}" for key, value in values.items())]
    path = tmp_path / "ddb2bq.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def convert(path: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``ddb2bq convert --from lambda --config PATH``: its exit code and stderr."""
    code = main(["convert", "--from", "lambda", "--config", path])
    return code, capsys.readouterr().err


def test_the_base_configuration_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the configuration every case below spoils in one place  THEN convert runs on it
    assert convert(write(tmp_path, {}), capsys) == (0, "")


# --- class 11: settings out of range or contradicting each other ------------------------------

BAD_SETTINGS = [  # (section, {setting: TOML value}, what the message must say)
    (
        "source",
        {"generation": "18446744073709551616"},
        "[source] generation is 18446744073709551616",
    ),
    ("source", {"generation": "-1"}, "[source] generation is -1"),
    ("source", {"keys": '["pk", "pk"]'}, "[source] keys lists 'pk' twice"),
    ("source", {"keys": '["pk", ""]'}, "[source] keys holds an empty name"),
    ("source", {"keys": '["a", "b", "c"]'}, "[source] keys lists 3 attributes"),
    ("source", {"region": '""'}, "[source] region is empty"),
    ("source", {"endpoint_url": '"localhost:8000"'}, "[source] endpoint_url 'localhost:8000'"),
    ("target", {"project": '"My Project"'}, "[target] project 'My Project' is not a Google"),
    ("target", {"dataset": '"orders.v2"'}, "[target] dataset 'orders.v2' is not a BigQuery"),
    ("target", {"table": '"orders.v2"'}, "[target] table 'orders.v2' is not a BigQuery"),
    ("target", {"location": '""'}, "[target] location is empty"),
    ("target", {"mirror": '"cdc"', "writer": '"insert_all"'}, 'set writer = "storage_write"'),
    ("target", {"endpoint": '"127.0.0.1:9050"'}, "[target] endpoint '127.0.0.1:9050'"),
    ("target", {"grpc_endpoint": '"http://127.0.0.1:9060"'}, "[target] grpc_endpoint"),
    ("columns", {"promote": '["status", ""]'}, "[columns] promote holds an empty name"),
    ("columns", {"promote": '["status", "status"]'}, "[columns] promote lists 'status' twice"),
    ("columns", {"types": '{ "" = "STRING" }'}, "[columns] types names an empty attribute"),
    ("dead_letters", {"kind": '"s3"'}, '[dead_letters] kind = "s3" needs s3_bucket'),
    ("dead_letters", {"path": '""'}, "[dead_letters] path is empty"),
    ("runner", {"merge_interval": "-60"}, "[runner] merge_interval is -60.0"),
    ("runner", {"merge_interval": "0"}, "[runner] merge_interval is 0.0"),
    ("runner", {"merge_interval": "nan"}, "[runner] merge_interval: expected a finite number"),
    ("runner", {"merge_interval": "inf"}, "[runner] merge_interval: expected a finite number"),
    ("runner", {"lease_seconds": "0"}, "[runner] lease_seconds is 0.0"),
    ("runner", {"page_size": "0"}, "[runner] page_size is 0"),
    ("runner", {"page_size": "1001"}, "[runner] page_size is 1001"),
    ("runner", {"report_interval": "-1"}, "[runner] report_interval is -1.0"),
    ("runner", {"checkpoints": '""'}, "[runner] checkpoints is empty"),
    ("lambda", {"memory": "0"}, "[lambda] memory is 0"),
    ("lambda", {"timeout": "901"}, "[lambda] timeout is 901"),
    ("lambda", {"batch_size": "0"}, "[lambda] batch_size is 0"),
    ("lambda", {"batching_window": "-1"}, "[lambda] batching_window is -1"),
    ("lambda", {"parallelization_factor": "0"}, "[lambda] parallelization_factor is 0"),
    ("lambda", {"maximum_retry_attempts": "-2"}, "[lambda] maximum_retry_attempts is -2"),
    ("lambda", {"maximum_record_age": "30"}, "[lambda] maximum_record_age is -1 (no limit)"),
    ("lambda", {"iterator_age_warning": "50000"}, "[lambda] iterator_age_warning must be below"),
    ("lambda", {"log_retention_days": "0"}, "[lambda] log_retention_days is 0"),
    ("lambda", {"code_key": '""'}, "[lambda] code_key is empty"),
]


@pytest.mark.parametrize(("section", "settings", "message"), BAD_SETTINGS)
def test_a_setting_out_of_range_or_in_conflict_exits_2_naming_it(
    section: str,
    settings: dict[str, str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a configuration that is right but for this one setting
    path = write(tmp_path, {section: settings})
    # WHEN any command loads it
    code, err = convert(path, capsys)
    # THEN it exits 2 with a sentence naming the setting, and no traceback
    assert code == 2
    assert message in err
    assert err.startswith("ddb2bq: error: ")
    assert "Traceback" not in err


def test_a_type_for_an_attribute_that_is_not_promoted_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the keys named, and a type for an attribute that is neither promoted nor a key
    # (convert would print a column that init never creates)
    path = write(
        tmp_path,
        {
            "source": {"keys": '["Id"]'},
            "columns": {"promote": '["status"]', "types": '{ total = "NUMERIC" }'},
        },
    )
    # WHEN convert loads it  THEN it exits 2 naming the attribute and the fix
    code, err = convert(path, capsys)
    assert code == 2
    assert "[columns] types gives 'total' a type" in err
    assert "add it to promote or remove its type" in err


def test_a_type_for_a_key_attribute_is_still_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a key typed STRING (the documented fix for a number key that fits no BIGNUMERIC)
    path = write(
        tmp_path, {"source": {"keys": '["Id"]'}, "columns": {"types": '{ Id = "STRING" }'}}
    )
    # THEN convert runs
    assert convert(path, capsys)[0] == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DDB2BQ_RUNNER_MERGE_INTERVAL", "nan", "DDB2BQ_RUNNER_MERGE_INTERVAL: expected a finite"),
        ("DDB2BQ_RUNNER_MERGE_INTERVAL", "-5", "[runner] merge_interval is -5.0"),
        ("DDB2BQ_SOURCE_GENERATION", "1e3", "DDB2BQ_SOURCE_GENERATION: expected a whole number"),
        ("DDB2BQ_SOURCE_GENERATION", str(16**16), "[source] generation is 18446744073709551616"),
        ("DDB2BQ_COLUMNS_PROMOTE", "status,status", "[columns] promote lists 'status' twice"),
        ("DDB2BQ_TARGET_WRITER", "insert_all", 'set writer = "storage_write"'),
    ],
)
def test_a_bad_environment_variable_exits_2_naming_it(
    variable: str,
    value: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a file that says nothing of the setting (cdc: so that writer matters), and the
    # setting from the environment
    path = write(tmp_path, {"target": {"mirror": '"cdc"'}})
    monkeypatch.setenv(variable, value)
    # WHEN a command loads them  THEN it exits 2 naming the variable or setting
    code, err = convert(path, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


# --- class 11: a configuration path that is no configuration ----------------------------------


def _directory(tmp_path: Path) -> Path:
    return tmp_path


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    return tmp_path / "empty.toml"


def _comments_only(tmp_path: Path) -> Path:
    (tmp_path / "blank.toml").write_text("# nothing set yet\n\n", encoding="utf-8")
    return tmp_path / "blank.toml"


def _latin1(tmp_path: Path) -> Path:
    (tmp_path / "latin1.toml").write_bytes('[source]\ntable = "café"\n'.encode("latin-1"))
    return tmp_path / "latin1.toml"


def _not_toml(tmp_path: Path) -> Path:
    (tmp_path / "ddb2bq.json").write_text('{"source": {"table": "orders"}}', encoding="utf-8")
    return tmp_path / "ddb2bq.json"


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope.toml"


def _outside_a_section(tmp_path: Path) -> Path:
    (tmp_path / "flat.toml").write_text('table = "orders"\n', encoding="utf-8")
    return tmp_path / "flat.toml"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_directory, r"is a directory[:;] give the path of a ddb2bq\.toml"),
        (_empty, r"is empty: write its \[source\]|holds no settings; write at least \[source\]"),
        (_comments_only, r"holds no settings; write at least \[source\] table"),
        (_latin1, r"is not UTF-8 text \(byte 21\); save it as UTF-8 TOML"),
        (_not_toml, r"is not valid TOML: .*; fix it and run again"),
        (_missing, r"does not exist; give the path of a ddb2bq\.toml"),
        (_outside_a_section, r"table = 'orders' stands outside any \[section\]"),
    ],
)
def test_a_config_path_that_is_no_configuration_exits_2_naming_it(
    make: object, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN --config naming a directory, an empty file, a file not UTF-8 or not TOML
    path = make(tmp_path)  # type: ignore[operator]
    # WHEN a command runs with it  THEN it exits 2 naming the path and saying what to do
    code, err = convert(str(path), capsys)
    assert code == 2
    assert str(path) in err
    assert re.search(message, err), err
    assert "Traceback" not in err


# --- class 4: numeric options ------------------------------------------------------------------


@pytest.mark.parametrize("hours", ["-48", "0", "0.1", "nan", "inf", "-inf", "1e12", "two"])
def test_a_lookback_that_would_skip_changes_exits_2_before_anything_runs(
    hours: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN `ddb2bq merge --lookback-hours` with a value that reaches nowhere, or overflows
    # WHEN it runs  THEN argparse refuses it with exit 2 naming the option (before any
    # configuration is read or BigQuery reached)
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", f"--lookback-hours={hours}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"argument --lookback-hours: '{hours}' is not a" in err
    assert "Traceback" not in err


def test_the_lookback_option_spans_the_overlap_to_the_longest_lookback() -> None:
    hour = 3600
    assert (
        DEFAULT_OVERLAP.total_seconds() / hour,
        MAX_LOOKBACK.total_seconds() / hour,
    ) == LOOKBACK_HOURS
