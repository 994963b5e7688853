"""The ddb2bq.toml the integration tests write: a local replication with its dead letters and
state beside the file; the servers' endpoints come from the environment (``local_env``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_config(
    path: Path,
    table: str,
    dataset: str,
    *,
    mirror: str = "view",
    target: Mapping[str, str] | None = None,
    columns: Mapping[str, str] | None = None,
    runner: Mapping[str, str] | None = None,
) -> str:
    """Write ``path`` and return it. ``target``, ``columns`` and ``runner`` hold extra settings
    as TOML values (strings quoted by the caller: ``{"on_gap": '"backfill"'}``); the writer is
    insertAll and ``[runner] checkpoints`` a SQLite file beside ``path`` unless given."""
    settings = {"checkpoints": f'"{path.parent / "state.sqlite"}"', **(runner or {})}
    lines = [
        "[source]",
        f'table = "{table}"',
        "[target]",
        f'dataset = "{dataset}"',
        f'mirror = "{mirror}"',
        'writer = "insert_all"',
        *_settings(target),
        *(["[columns]", *_settings(columns)] if columns else []),
        "[dead_letters]",
        f'path = "{path.parent / "dead-letters"}"',
        "[runner]",
        *_settings(settings),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _settings(values: Mapping[str, str] | None) -> list[str]:
    return [f"{key} = {value}" for key, value in (values or {}).items()]
