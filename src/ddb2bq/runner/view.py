"""Progress of a long run: a live table on a terminal (rich), one structured log line per
interval otherwise.

>>> reporter = reporter_for(sys.stderr)  # doctest: +SKIP
>>> runner = Runner(..., report=reporter)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import IO, Any

from ddb2bq.runner.loop import Reporter, Snapshot

logger = logging.getLogger("ddb2bq.runner")


def log_snapshot(snapshot: Snapshot) -> None:
    """One log line: totals, the rate, and the worst lag (per shard at DEBUG)."""
    lags = [s.lag_s for s in snapshot.shards if s.lag_s is not None and not s.finished]
    logger.info(
        "Replicating %s: %d written, %.0f changes/s, %d dead letters, %d retries.",
        snapshot.table,
        snapshot.written,
        snapshot.changes_per_s,
        snapshot.dead_lettered,
        snapshot.retries,
        extra={
            "table": snapshot.table,
            "written": snapshot.written,
            "changes_per_s": round(snapshot.changes_per_s, 1),
            "dead_letters": snapshot.dead_lettered,
            "retries": snapshot.retries,
            "lag_max_s": round(max(lags), 1) if lags else None,
            "shards_open": sum(1 for s in snapshot.shards if s.open),
        },
    )


class LiveView:
    """A rich table redrawn at each snapshot: totals, then one row per unfinished shard."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console  # noqa: PLC0415 (only on a terminal)
        from rich.live import Live  # noqa: PLC0415

        self._live = Live(console=Console(file=stream), auto_refresh=False, transient=False)
        self._live.start()

    def __call__(self, snapshot: Snapshot) -> None:
        self._live.update(_table(snapshot), refresh=True)

    def close(self) -> None:
        """Leave the last table on the screen."""
        self._live.stop()


def _table(snapshot: Snapshot) -> Any:
    from rich.table import Table  # noqa: PLC0415

    title = (
        f"{snapshot.table}: {snapshot.written:,} written · {snapshot.changes_per_s:,.0f} changes/s"
        f" · {snapshot.dead_lettered} dead letters · {snapshot.retries} retries"
    )
    table = Table(title=title, title_justify="left")
    for column in ("shard", "parent", "state", "checkpoint", "lag s", "pending"):
        table.add_column(column, justify="right" if column in ("lag s", "pending") else "left")
    for shard in sorted(snapshot.shards, key=lambda s: (s.finished, s.shard_id)):
        if shard.finished:
            continue
        table.add_row(
            shard.shard_id[-24:],
            (shard.parent_id or "")[-24:],
            "open" if shard.open else "closed",
            shard.checkpoint or "-",
            "-" if shard.lag_s is None else f"{shard.lag_s:.1f}",
            str(shard.pending),
        )
    done = sum(1 for s in snapshot.shards if s.finished)
    if done:
        table.caption = f"{done} shards read to their end"
    return table


def reporter_for(stream: IO[str]) -> Reporter:
    """A :class:`LiveView` on ``stream`` when it is a terminal (and rich is installed), else
    :func:`log_snapshot`."""
    if stream.isatty():
        try:
            return LiveView(stream)
        except ImportError:
            pass
    return log_snapshot
