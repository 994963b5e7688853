"""The warm start: a cold container writes through insertAll while Storage Write loads.

Importing the Storage Write client (gRPC, protobuf, google-api-core, the generated
``google.cloud.bigquery_storage_v1``) costs about as much as the whole import bill of the obvious
function; paid at the first write, it made the default writer's cold start 1.27x that bill, where
``insertAll`` over the light REST client (:mod:`ddb2bq.bigquery.rest`, standard library only)
takes about half. So a cold container

1. imports the REST write path in its own thread (:func:`import_rest_path`), then starts a
   :class:`StorageWriteLoader`: a background thread importing the Storage Write client
   (the Lambda handler does both in Lambda's init phase);
2. writes the changelog through ``insertAll`` while the loader runs (:class:`WarmStartWriter`);
3. moves to Storage Write, for good, at the first batch after the loader is done
   (:class:`StorageWriteSwitch`): steady traffic pays Storage Write's price, a cold container's
   first batch or two pay insertAll's.

When it applies (:func:`applies`):

=========================================  ==================================================
configuration                              a cold container's changelog writes
=========================================  ==================================================
``writer = "storage_write"`` (default),    insertAll until the client is loaded, then
``mirror = "view"`` or ``"merge"``,        Storage Write
with or without ``[[entities]]``
``writer = "insert_all"``                  insertAll: nothing to load
``mirror = "cdc"`` (with or without        Storage Write from the first batch, loaded at it:
``[[entities]]``)                          the mirror's UPSERT/DELETE rows exist only in
                                           Storage Write and a batch is done only when they
                                           are written, so writing its changelog through
                                           insertAll first would gain nothing; a cdc mirror
                                           is never written through insertAll
=========================================  ==================================================

What stays as it was:

- each batch goes whole through one writer, with that writer's contract: every failure classed
  retryable or terminal, row-level errors never dropped, the writer's retries bounded by the
  deadline of :mod:`ddb2bq.contract`; the pipeline's ordered-stream rule is untouched;
- a batch retried after the switch may repeat rows insertAll already took: the changelog already
  tolerates that (the same ``event_id`` and ``seq``; mirrors keep the newest ``seq``);
- the handler never waits for the loader, except a schema evolution, which imports the full
  BigQuery client (sharing most of the loader's modules): it waits for the loader at most
  :data:`EVOLVE_WAIT` seconds (never past the deadline), else the batch is retried;
- a loader that fails (an ``ImportError`` in a broken package, a client that cannot be made) is
  one ERROR line naming the cause; the container keeps writing through insertAll.

The two threads do not import the same modules at the same time, as far as ddb2bq decides it:
the REST path (and, for a real BigQuery, google-auth's transport and ``ssl``) is imported before
the loader starts. Deployed, the first batch still resolves the credentials and refreshes the
token (google-auth imports a few modules of its own) while the loader runs; Python's per-module
import locks keep the two apart.

>>> loader = start_loader(config)  # doctest: +SKIP  (None when the warm start does not apply)
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ddb2bq import heap
from ddb2bq.config import Config
from ddb2bq.contract import Writer, WriteResult, current_deadline
from ddb2bq.exceptions import RetryableError
from ddb2bq.rows import Rows

logger = logging.getLogger(__name__)

PAUSE_LIMIT = 2.0
"""Seconds the loader waits for its turn at most, before each step (see
:class:`StorageWriteLoader`)."""
EVOLVE_WAIT = 30.0
"""Seconds a schema evolution waits for a loader still running (less when the deadline is
nearer) before the batch is retried instead."""

REST_PATH = (
    "ddb2bq.bigquery.factory",
    "ddb2bq.bigquery.clients",
    "ddb2bq.bigquery.rest",
    "ddb2bq.bigquery.insert_all",
    "ddb2bq.bigquery.tables",
)
"""What the insertAll write path imports at its first write."""
REST_AUTH_PATH = ("ddb2bq.bigquery.auth", "ssl", "certifi")
"""What its first request to a real BigQuery imports besides (google-auth's transport, TLS;
``certifi`` when installed)."""


STORAGE_WRITE_STEPS = (
    "google.protobuf.descriptor_pool",
    "google.protobuf.message_factory",
    "google.rpc.status_pb2",
    "google.rpc.error_details_pb2",
    "asyncio",
    "concurrent.futures",
    "grpc._cython.cygrpc",
    "grpc",
    "urllib3.exceptions",
    "urllib3.util",
    "urllib3",
    "charset_normalizer",
    "idna",
    "requests",
    "google.api_core.exceptions",
    "cryptography.x509",
    "cryptography.hazmat.primitives.serialization",
    "google.auth.crypt",
    "google.oauth2.service_account",
    "google.auth.transport.grpc",
    "google.api_core.gapic_v1",
    "proto",
    "google.cloud.bigquery_storage_v1.types",
)
"""What the Storage Write client imports, in the order it does (``python -X importtime``), in
steps of about 5 to 30 ms each: the loader gives way to the handler between two of them."""


def applies(config: Config) -> bool:
    """True when a cold container writes through insertAll while Storage Write loads: the
    ``storage_write`` writer without a ``cdc`` mirror (see the module's table)."""
    return config.target.writer == "storage_write" and config.target.mirror != "cdc"


def import_rest_path(config: Config) -> None:
    """Import the modules the insertAll write path imports at its first write, so that the
    loader's thread never imports them at the same time."""
    needs_auth = not config.target.endpoint
    for name in REST_PATH + (REST_AUTH_PATH if needs_auth else ()):
        try:
            importlib.import_module(name)
        except ImportError:
            if name != "certifi":  # optional: the system's trust store otherwise
                raise


def start_loader(
    config: Config, load: Callable[[], object] | None = None
) -> StorageWriteLoader | None:
    """For a cold container: import the REST write path here, then start loading the Storage
    Write client (``load``, default :func:`ddb2bq.bigquery.clients.import_write_client`) in the
    background; None when the warm start does not apply to ``config``."""
    if not applies(config):
        return None
    import_rest_path(config)
    if load is None:
        from ddb2bq.bigquery import clients  # noqa: PLC0415 (imported just above)

        def load() -> None:
            clients.import_write_client(config)

    loader = StorageWriteLoader(load, steps=STORAGE_WRITE_STEPS, wait_for_handler=True, freeze=True)
    loader.start()
    return loader


class StorageWriteLoader:
    """Runs ``load`` (the Storage Write client's imports) once, in a background daemon thread,
    after importing ``steps`` one by one, each when it is the loader's turn.

    The handler's own work comes first: inside :meth:`paused` (an invocation) the loader starts
    no new step, except inside :meth:`meanwhile` (the handler waits for BigQuery's answer);
    with ``wait_for_handler`` it leaves the first invocation alone, waits included: no step
    starts before that invocation's :meth:`paused` block ends, so that a cold container's first
    write comes first. It never waits more than ``pause_limit`` seconds for its turn, so it
    always gets on. Python runs one thread at a time: an import step running beside the
    handler's conversion would slow it down by as much, and a step started in a short wait
    runs on past it (the import of gRPC's core alone takes 20 to 40 ms). A step that cannot be
    imported is skipped (``load`` says whether the client can be had).

    With ``freeze``, in a process whose objects were frozen before (the Lambda's init phase
    freezes its own: :mod:`ddb2bq.aws_lambda`), the objects made since (the client's modules
    among them) are frozen too once the load is done, out of the cyclic garbage collector's
    reach (:func:`gc.freeze`); elsewhere (a handler made in some other program) nothing is.

    :attr:`ready` tells without waiting whether the load succeeded; :meth:`wait` waits at most
    ``timeout`` seconds for it to end. A failure is logged once, as an ERROR naming it, and kept
    in :attr:`error`; :attr:`ready` then stays False for good.

    >>> loader = StorageWriteLoader(lambda: None)
    >>> loader.start()
    >>> loader.wait(5.0), loader.ready
    (True, True)
    """

    def __init__(
        self,
        load: Callable[[], object],
        *,
        steps: Sequence[str] = (),
        pause_limit: float = PAUSE_LIMIT,
        wait_for_handler: bool = False,
        freeze: bool = False,
        name: str = "ddb2bq-storage-write",
    ) -> None:
        self._load = load
        self._freeze = freeze
        self._steps = tuple(steps)
        self._pause_limit = pause_limit
        self._name = name
        self._done = threading.Event()
        self._turn = threading.Event()
        self._first_invocation = wait_for_handler  # held until it ends
        if not wait_for_handler:
            self._turn.set()
        self._pauses = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None
        self.seconds: float | None = None
        """How long the load took (pauses included), once it is done."""

    def start(self) -> None:
        """Start the thread (once; later calls change nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    @property
    def done(self) -> bool:
        """True once the load ended, well or not."""
        return self._done.is_set()

    @property
    def ready(self) -> bool:
        """True once the load succeeded."""
        return self._done.is_set() and self.error is None

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the load to end; True when it has ended."""
        return self._done.wait(max(timeout, 0.0))

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Inside the block (the handler's work) the loader starts no new step."""
        self._add_pause(1)
        try:
            yield
        finally:
            self._add_pause(-1, release=True)

    @contextmanager
    def meanwhile(self, *, needed: bool = False) -> Iterator[None]:
        """Inside :meth:`paused`, a block that waits on the network: the loader may go on
        (after the first invocation, with ``wait_for_handler``; at once when the block waits
        for the load itself: ``needed``)."""
        self._add_pause(-1, release=needed)
        try:
            yield
        finally:
            self._add_pause(1)

    def _add_pause(self, change: int, *, release: bool = False) -> None:
        with self._lock:
            self._pauses += change
            if release:  # the first invocation ended, or needs the load
                self._first_invocation = False
            if self._pauses > 0 or self._first_invocation:
                self._turn.clear()
            else:
                self._turn.set()

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            for step in self._steps:
                self._turn.wait(self._pause_limit)
                try:
                    importlib.import_module(step)
                except ImportError:
                    logger.debug("The warm start skipped %s: it cannot be imported.", step)
            self._turn.wait(self._pause_limit)
            self._load()
            if self._freeze and heap.is_frozen():  # as the init phase did (a container's
                heap.freeze_for_good()  # modules live as long as it); a process that froze
                # nothing: nothing
        except Exception as exc:  # reported: one ERROR line, and kept
            self.error = exc
            logger.error(
                "Loading the Storage Write client failed (%s: %s); this container keeps writing "
                "the changelog through insertAll (twice the price per GB). Is "
                "google-cloud-bigquery-storage in the package (ddb2bq package builds it)?",
                type(exc).__name__,
                exc,
                exc_info=True,
            )
        finally:
            self.seconds = time.perf_counter() - started
            self._done.set()


class StorageWriteSwitch:
    """A container's one switch from insertAll to Storage Write, shared by its writers.

    :meth:`client` is None while ``loader`` runs (or after it failed); once it is ready, the
    Storage Write client made by ``make_client`` (in the caller's thread, with the credentials
    the REST client uses), for good. A client that cannot be made is one ERROR line, and
    insertAll goes on.
    """

    def __init__(self, loader: StorageWriteLoader, make_client: Callable[[], Any]) -> None:
        self._loader = loader
        self._make_client = make_client
        self._client: Any = None
        self._given_up = False
        self.cold_batches = 0
        """Batches written through insertAll while Storage Write loaded."""

    @property
    def loader(self) -> StorageWriteLoader:
        """The loader this switch waits for."""
        return self._loader

    def client(self) -> Any:
        """The Storage Write client, or None while insertAll writes (never waits)."""
        if self._client is None and not self._given_up and self._loader.ready:
            try:
                self._client = self._make_client()
            except Exception as exc:  # reported: one ERROR line, and kept
                self._given_up = True
                logger.error(
                    "Making the Storage Write client failed (%s: %s); this container keeps "
                    "writing the changelog through insertAll (twice the price per GB).",
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
                return None
            logger.info(
                "Storage Write is ready (loaded in the background in %.0f ms); the changelog "
                "is written through it from now on.",
                (self._loader.seconds or 0.0) * 1000,
                extra={"insert_all_batches": self.cold_batches},
            )
        return self._client

    def count_cold_batch(self) -> None:
        """Note one batch written through insertAll (the first one is logged)."""
        if self.cold_batches == 0 and not self._given_up:
            logger.info(
                "Cold start: the changelog is written through insertAll while the Storage Write "
                "client loads in the background."
            )
        self.cold_batches += 1

    def wait_for_loader(self, what: str) -> None:
        """Before ``what`` imports the Google client libraries: wait for the loader, at most
        :data:`EVOLVE_WAIT` seconds and never past the current deadline; raise RetryableError
        when it is still running then."""
        if self._loader.done:
            return
        deadline = current_deadline()
        timeout = EVOLVE_WAIT if deadline is None else min(EVOLVE_WAIT, deadline.remaining())
        with self._loader.meanwhile(needed=True):  # the handler waits for it: its turn
            loaded = self._loader.wait(timeout)
        if not loaded:
            raise RetryableError(
                f"{what} waits for the Storage Write client, still loading after "
                f"{timeout:.1f} s; the batch will be tried again."
            )


class WarmStartWriter:
    """A :class:`~ddb2bq.contract.Writer` of one layout's changelog rows: each batch goes whole
    through ``insert_all`` while ``switch`` has no Storage Write client, else through the writer
    ``storage_write(client)`` makes (once)."""

    def __init__(
        self,
        switch: StorageWriteSwitch,
        insert_all: Writer,
        storage_write: Callable[[Any], Writer],
    ) -> None:
        self._switch = switch
        self._insert_all = insert_all
        self._storage_write = storage_write
        self._warm: Writer | None = None

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Write ``batch`` through the writer of the moment (see the class)."""
        if self._warm is None:
            client = self._switch.client()
            if client is None:
                self._switch.count_cold_batch()
                with self._switch.loader.meanwhile():  # mostly waiting for BigQuery
                    return self._insert_all.write(batch)
            self._warm = self._storage_write(client)
        return self._warm.write(batch)


__all__ = [
    "EVOLVE_WAIT",
    "StorageWriteLoader",
    "StorageWriteSwitch",
    "WarmStartWriter",
    "applies",
    "import_rest_path",
    "start_loader",
]
