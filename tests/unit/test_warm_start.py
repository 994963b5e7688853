"""The warm start's switching: a cold container's changelog goes through insertAll while the
Storage Write client loads in the background, then through Storage Write for good; a load that
fails is one error and insertAll goes on; nothing waits for the loader but a schema evolution,
and that within the deadline. Fakes: the loader's ``load`` is a function held by an event, the
writers are :class:`~tests.doubles.writers.FakeWriter`. (Against the emulator:
tests/integration/test_warm_start.py.)"""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

import pytest

from ddb2bq import heap
from ddb2bq.bigquery import warm_start
from ddb2bq.bigquery.warm_start import StorageWriteLoader, StorageWriteSwitch, WarmStartWriter
from ddb2bq.config import Config, SourceConfig, TargetConfig, load_config
from ddb2bq.contract import Deadline, Writer, deadline_scope
from ddb2bq.exceptions import RetryableError
from ddb2bq.pipeline import Pipeline
from ddb2bq.records import Change, make_seq
from ddb2bq.schema import TableLayout, build_layout
from tests.doubles.dead_letters import ListDeadLetters
from tests.doubles.writers import FakeWriter, by_event_id

CONFIG = Config(source=SourceConfig(table="orders"), target=TargetConfig(project="p", dataset="d"))
LAYOUT = build_layout([("id", "S")])
WAIT = 10.0  # generous: a loader released by the test ends long before


def change(position: int) -> Change:
    keys = {"id": {"S": f"k{position}"}}
    return Change("INSERT", keys, keys, None, make_seq(0, position), 1_700_000_000_000_000,
                  f"e{position}", table="orders")  # fmt: skip


class HeldLoad:
    """A ``load`` that runs until the test releases it, or raises ``error`` then."""

    def __init__(self, error: Exception | None = None) -> None:
        self.release = threading.Event()
        self.error = error
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        assert self.release.wait(WAIT), "the test never released the load"
        if self.error is not None:
            raise self.error


class Container:
    """A pipeline over a warm start: insertAll and Storage Write are two fake writers."""

    def __init__(
        self,
        load: HeldLoad,
        *,
        client_error: Exception | None = None,
        insert_all: FakeWriter | None = None,
    ) -> None:
        self.load = load
        self.loader = StorageWriteLoader(load)
        self.insert_all = insert_all or FakeWriter()
        self.storage_write = FakeWriter()
        self.clients_made: list[object] = []
        self.client_error = client_error
        self.switch = StorageWriteSwitch(self.loader, self._make_client)
        self.pipeline = Pipeline(CONFIG, LAYOUT, self._writer_for, ListDeadLetters())
        self.loader.start()

    def _make_client(self) -> object:
        if self.client_error is not None:
            raise self.client_error
        client = object()
        self.clients_made.append(client)
        return client

    def _writer_for(self, layout: TableLayout) -> Writer:
        def storage_write(client: Any) -> Writer:
            assert client is self.clients_made[-1]
            return self.storage_write

        return WarmStartWriter(self.switch, self.insert_all, storage_write)

    def loaded(self) -> None:
        self.load.release.set()
        assert self.loader.wait(WAIT)

    def write(self, *positions: int) -> list[str]:
        result = self.pipeline.process([change(p) for p in positions], ordered=True)
        return [o.status for o in result.outcomes]


def test_batches_go_through_insert_all_while_storage_write_loads() -> None:
    # GIVEN a cold container whose Storage Write client is still loading
    container = Container(HeldLoad())
    # WHEN two batches come
    assert container.write(1, 2) == ["written", "written"]
    assert container.write(3) == ["written"]
    # THEN both went whole through insertAll, and nothing waited for the loader
    assert container.insert_all.batch_ids() == [["e1", "e2"], ["e3"]]
    assert container.storage_write.batches == []
    assert not container.loader.done
    assert container.switch.cold_batches == 2
    container.loaded()


def test_once_loaded_every_batch_goes_through_storage_write() -> None:
    # GIVEN a container that wrote one batch through insertAll
    container = Container(HeldLoad())
    container.write(1)
    # WHEN the load ends and more batches come
    container.loaded()
    container.write(2, 3)
    container.write(4)
    # THEN they go through Storage Write, with one client made for good
    assert container.insert_all.batch_ids() == [["e1"]]
    assert container.storage_write.batch_ids() == [["e2", "e3"], ["e4"]]
    assert len(container.clients_made) == 1


def test_a_grown_layout_keeps_the_writer_of_the_moment() -> None:
    # GIVEN a switch already on Storage Write
    container = Container(HeldLoad())
    container.loaded()
    container.write(1)
    # WHEN a writer is made for another layout (a schema evolution)
    writer = container._writer_for(build_layout([("id", "S")], promoted={"total": "INT64"}))
    writer.write([])
    # THEN it writes through Storage Write too, with the same client
    assert len(container.storage_write.batches) == 2
    assert len(container.clients_made) == 1


def test_a_failed_load_is_one_error_and_insert_all_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a load that fails as a package without the Storage Write client would
    container = Container(
        HeldLoad(ImportError("No module named 'google.cloud.bigquery_storage_v1'"))
    )
    caplog.set_level(logging.INFO, logger="ddb2bq")
    # WHEN it ends and batches keep coming
    container.loaded()
    container.write(1)
    container.write(2)
    # THEN one ERROR names the cause, and the changelog keeps going through insertAll
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "ImportError" in errors[0].getMessage()
    assert "insertAll" in errors[0].getMessage()
    assert not container.loader.ready
    assert isinstance(container.loader.error, ImportError)
    assert container.insert_all.batch_ids() == [["e1"], ["e2"]]
    assert container.storage_write.batches == []


def test_a_client_that_cannot_be_made_is_one_error_and_insert_all_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a load that succeeds, but a Storage Write client that cannot be made
    container = Container(HeldLoad(), client_error=ValueError("bad credentials"))
    container.loaded()
    # WHEN batches come
    container.write(1)
    container.write(2)
    # THEN one ERROR, once; insertAll writes them
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [("ValueError" in r.getMessage()) for r in errors] == [True]
    assert container.insert_all.batch_ids() == [["e1"], ["e2"]]


def test_the_ordered_stream_rule_holds_across_the_switch() -> None:
    # GIVEN insertAll fails the second change of a cold batch retryably
    container = Container(HeldLoad(), insert_all=FakeWriter(by_event_id({"e2": "retryable"})))
    # WHEN the batch is written  THEN the stream is told to retry from it on
    assert container.write(1, 2, 3) == ["written", "retryable", "retryable"]
    # WHEN it is delivered again from there after Storage Write loaded
    container.loaded()
    assert container.write(2, 3) == ["written", "written"]
    # THEN Storage Write took the redelivery (e3, which insertAll took too, repeats: the same
    # event_id and seq, as any redelivery)
    assert container.storage_write.batch_ids() == [["e2", "e3"]]


def test_a_writer_outage_while_cold_is_retryable() -> None:
    # GIVEN insertAll is down (its retries ran out) while Storage Write loads
    container = Container(HeldLoad())
    container.insert_all.down = True
    # WHEN a batch comes  THEN every change is retryable: nothing is lost
    assert container.write(1, 2) == ["retryable", "retryable"]
    container.loaded()


def test_an_evolution_waits_for_the_loader_no_longer_than_the_deadline() -> None:
    # GIVEN a loader still running and a deadline already reached (a fake clock)
    container = Container(HeldLoad())
    deadline = Deadline(at=100.0, clock=lambda: 100.0)
    # WHEN an evolution would import the full client  THEN it is retryable, without waiting
    with deadline_scope(deadline), pytest.raises(RetryableError, match="still loading"):
        container.switch.wait_for_loader("Adding columns to the changelog")
    # ... and once the load is done, it goes ahead
    container.loaded()
    container.switch.wait_for_loader("Adding columns to the changelog")


def test_the_loader_leaves_the_first_invocation_alone_then_goes_on() -> None:
    # GIVEN a loader that gives way to the handler
    steps_done: list[str] = []
    loader = StorageWriteLoader(
        lambda: steps_done.append("load"), wait_for_handler=True, pause_limit=WAIT
    )
    loader.start()
    # WHEN the first invocation works and waits for BigQuery  THEN the loader has not loaded:
    # a step started in that short wait would run on past it and delay the first write
    with loader.paused():
        assert not loader.wait(0.05)
        with loader.meanwhile():
            assert not loader.wait(0.05)
    # WHEN that invocation has ended  THEN the loader goes on (between invocations here; in
    # Lambda, which freezes the container then, while the next ones wait for BigQuery)
    assert loader.wait(WAIT)
    assert steps_done == ["load"]
    assert loader.ready


def test_an_evolution_in_the_first_invocation_lets_the_loader_go_on_while_it_waits() -> None:
    # GIVEN a container whose loader still leaves the first invocation alone
    steps_done: list[str] = []
    loader = StorageWriteLoader(
        lambda: steps_done.append("load"), wait_for_handler=True, pause_limit=WAIT
    )
    switch = StorageWriteSwitch(loader, lambda: "client")
    loader.start()
    # WHEN the first invocation needs the full client (a schema evolution)
    with loader.paused():
        switch.wait_for_loader("Adding columns to the changelog")
        # THEN the loader ran while the handler waited for it, without a retry
        assert loader.ready
    assert steps_done == ["load"]


def test_the_loader_imports_its_steps_and_skips_missing_ones() -> None:
    # GIVEN steps, one of them not installed
    loaded: list[str] = []
    loader = StorageWriteLoader(
        lambda: loaded.append("load"), steps=("json", "no_such_module_of_ddb2bq_tests")
    )
    # WHEN it runs  THEN the missing step is skipped and the load still runs
    loader.start()
    assert loader.wait(WAIT)
    assert loader.ready
    assert loaded == ["load"]


def test_a_freezing_loader_puts_what_it_loaded_out_of_the_collectors_reach() -> None:
    # GIVEN a process whose objects were frozen (as a Lambda init phase does), and a loader that
    # freezes, whose load makes objects that live on (as modules do)
    kept: list[list[dict[str, Any]]] = []
    loader = StorageWriteLoader(lambda: kept.append([{"x": []} for _ in range(1000)]), freeze=True)
    heap.freeze_for_good()
    before = gc.get_freeze_count()
    try:
        # WHEN it has run
        loader.start()
        assert loader.wait(WAIT)
        # THEN they are frozen too: collections no longer walk them
        assert loader.ready
        assert gc.get_freeze_count() >= before + 1000
    finally:
        heap.unfreeze()  # this process's objects back to the collector


@pytest.mark.parametrize("freeze", [False, True])
def test_a_loader_freezes_nothing_in_a_process_that_froze_nothing(freeze: bool) -> None:
    # GIVEN a process that froze nothing (a handler made in some other program)
    gc.collect()  # (Python 3.12 counts the immortal objects a collection met as frozen)
    before = gc.get_freeze_count()
    assert not heap.is_frozen()
    # WHEN a loader, asked to freeze or not, has run  THEN nothing was frozen
    loader = StorageWriteLoader(lambda: None, freeze=freeze)
    loader.start()
    assert loader.wait(WAIT)
    assert not heap.is_frozen()
    assert gc.get_freeze_count() < before + 100  # a freeze would take this process's thousands


@pytest.mark.parametrize(
    ("settings", "applies"),
    [
        ({}, True),  # the default: storage_write, view mirror
        ({"DDB2BQ_TARGET_MIRROR": "merge"}, True),
        ({"DDB2BQ_TARGET_WRITER": "insert_all"}, False),  # nothing to load
        ({"DDB2BQ_TARGET_MIRROR": "cdc"}, False),  # never a cdc mirror through insertAll
    ],
)
def test_when_the_warm_start_applies(settings: dict[str, str], applies: bool) -> None:
    config = load_config(
        environ={
            "DDB2BQ_SOURCE_TABLE": "t",
            "DDB2BQ_TARGET_PROJECT": "p",
            "DDB2BQ_TARGET_DATASET": "d",
            **settings,
        }
    )
    assert warm_start.applies(config) is applies


def test_no_loader_starts_for_a_cdc_mirror() -> None:
    # GIVEN a cdc mirror (its UPSERT/DELETE need Storage Write from the first batch)
    config = load_config(
        environ={
            "DDB2BQ_SOURCE_TABLE": "t",
            "DDB2BQ_TARGET_PROJECT": "p",
            "DDB2BQ_TARGET_DATASET": "d",
            "DDB2BQ_TARGET_MIRROR": "cdc",
        }
    )
    # WHEN a cold container starts  THEN nothing loads in the background
    calls: list[str] = []
    assert warm_start.start_loader(config, load=lambda: calls.append("load")) is None
    assert calls == []
