"""Configuration from a TOML file and DDB2BQ_<SECTION>_<KEY> variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddb2bq.config import load_config
from ddb2bq.exceptions import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ddb2bq.toml"
    path.write_text(text)
    return path


def test_file_settings_are_read_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[source]
table = "orders"
keys = ["pk", "sk"]
generation = 2
[target]
project = "p"
dataset = "d"
mirror = "merge"
deletes = "soft"
[columns]
promote = ["status", "total"]
types = { total = "NUMERIC" }
""",
    )
    config = load_config(path, environ={})
    assert config.source.table == "orders"
    assert config.source.keys == ("pk", "sk")
    assert config.source.generation == 2
    assert config.target.mirror == "merge"
    assert config.target.deletes == "soft"
    assert config.columns.promote == ("status", "total")
    assert config.columns.types == {"total": "NUMERIC"}
    assert config.target_table == "orders"


def test_every_setting_can_come_from_the_environment() -> None:
    config = load_config(
        environ={
            "DDB2BQ_SOURCE_TABLE": "orders",
            "DDB2BQ_SOURCE_ENDPOINT_URL": "http://127.0.0.1:5000",
            "DDB2BQ_SOURCE_GENERATION": "3",
            "DDB2BQ_TARGET_MIRROR": "cdc",
            "DDB2BQ_TARGET_TABLE": "orders_mirror",
            "DDB2BQ_COLUMNS_PROMOTE": "status, total",
            "DDB2BQ_COLUMNS_TYPES": '{"total": "BIGNUMERIC"}',
            "DDB2BQ_DEAD_LETTERS_KIND": "sqs",
            "PATH": "/usr/bin",
        }
    )
    assert config.source.endpoint_url == "http://127.0.0.1:5000"
    assert config.source.generation == 3
    assert config.target.mirror == "cdc"
    assert config.target_table == "orders_mirror"
    assert config.columns.promote == ("status", "total")
    assert config.columns.types == {"total": "BIGNUMERIC"}
    assert config.dead_letters.kind == "sqs"


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[source]\ntable = "from-file"\n')
    config = load_config(
        path, environ={"DDB2BQ_SOURCE_TABLE": "from-env", "DDB2BQ_SOURCE_REGION": "eu-west-1"}
    )
    assert config.source.table == "from-file"
    assert config.source.region == "eu-west-1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sources]\ntable='x'\n", r"unknown section \[sources\]"),
        ("[source]\ntabel='x'\n", r"\[source\] tabel: unknown setting 'tabel'"),
        (
            "[target]\nmirror='table'\n",
            r"\[target\] mirror: 'table' is not one of view \| merge \| cdc",
        ),
        ("[source]\ngeneration='two'\n", r"expected a whole number"),
        ("[columns]\ntypes={x='FLOAT'}\n", r"attribute 'x' has type 'FLOAT'"),
        ("[source\n", r"not valid TOML"),
    ],
)
def test_unknown_keys_and_bad_values_are_clear_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DDB2BQ_TABLE": "x"}, "DDB2BQ_TABLE names no known section"),
        ({"DDB2BQ_TARGET_MIROR": "view"}, "DDB2BQ_TARGET_MIROR: unknown setting 'miror'"),
        ({"DDB2BQ_SOURCE_GENERATION": "x"}, "DDB2BQ_SOURCE_GENERATION: expected a whole number"),
        ({"DDB2BQ_COLUMNS_TYPES": "{bad"}, "DDB2BQ_COLUMNS_TYPES: expected JSON"),
    ],
)
def test_bad_environment_variables_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=environ)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a directory"),
        (b"", "holds no settings"),
        (b"# to do\n", "holds no settings"),
        ('[source]\ntable = "café"\n'.encode("latin-1"), r"is not UTF-8 text \(byte 21\)"),
    ],
)
def test_a_path_that_is_no_configuration_is_a_config_error_naming_it(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path
    if content is not None:
        path = tmp_path / "ddb2bq.toml"
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path, environ={})
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DDB2BQ_TARGET_PROJECT", "example.com:analytics-prod"),
        ("DDB2BQ_TARGET_PROJECT", "p"),
        ("DDB2BQ_TARGET_DATASET", "Dynamo_DB_2"),
        ("DDB2BQ_TARGET_TABLE", "orders-v2"),
        ("DDB2BQ_TARGET_TABLE", "注文 テーブル"),
        ("DDB2BQ_TARGET_GRPC_ENDPOINT", "127.0.0.1:9060"),
        ("DDB2BQ_SOURCE_GENERATION", str(16**16 - 1)),
    ],
)
def test_names_and_numbers_bigquery_accepts_are_accepted(key: str, value: str) -> None:
    config = load_config(environ={key: value})
    section, setting = key.removeprefix("DDB2BQ_").lower().split("_", 1)
    assert str(getattr(getattr(config, section), setting)) == value


def test_a_target_table_too_long_for_its_generations_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[target\] table 'xxx.*at most 1012 bytes"):
        load_config(environ={"DDB2BQ_TARGET_TABLE": "x" * 1013})


def test_ddb2bq_debug_in_the_environment_is_not_read_as_a_setting() -> None:
    # GIVEN a Lambda-style environment with DDB2BQ_DEBUG set beside the settings
    environ = {"DDB2BQ_SOURCE_TABLE": "orders", "DDB2BQ_DEBUG": "1"}
    # WHEN the configuration is read
    config = load_config(environ=environ)
    # THEN it loads (no "names no known section" error) and holds the settings
    assert config.source.table == "orders"
