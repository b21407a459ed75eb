"""Publishing on the second core: capture's thread hands its events to a publisher process.

Capture's work per event falls in two halves of about the same cost: reading and decoding the
replication stream (with the DBLog window, which needs every decoded key), and building the
typed envelope, encoding it and handing it to librdkafka (``ChangePublisher``). Python runs
one thread at a time, so with ``[capture] separate_publisher`` the second half runs in a child
process, on the other core. ``PublisherProcess`` has ``ChangePublisher``'s interface; events
and quarantine requests cross a pipe in pickled batches, in stream order, so the child
produces them in the order capture read them.

Nothing about the guarantees changes. ``flush`` sends the open batch and returns only once the
child reports that Kafka has acknowledged every record sent so far; capture confirms the slot
after that, as before. A publishing error in the child (the broker away, a schema refused) is
held until that report and raised here as the same class, retriable or fatal; the attempt then
starts again from the slot's confirmed position with a renewed child. The child dies with its
parent (the pipe closes), and its counters are sent with each report, so the parent's
/metrics counts every event.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import structlog

from connectors.capture import metrics
from connectors.capture.publisher import ChangePublisher
from connectors.registry import SchemaRegistry
from connectors.settings import CaptureSettings, KafkaSettings, RegistrySettings
from engine.errors import RetriableError
from engine.events import ChangeEvent

log = structlog.get_logger(__name__)

_BATCH = 200  # events per message on the pipe: enough to make the pickling cheap per event
_REPLY_GRACE_S = 30.0  # how long past its flush timeout the child may take to answer


class PublisherGoneError(RetriableError):
    """The publisher process exited or stopped answering; the attempt starts again."""


@dataclass(frozen=True)
class PublisherSpec:
    """What the child needs to build its ``ChangePublisher`` (it opens its own clients)."""

    kafka: KafkaSettings
    registry: RegistrySettings
    partitions: int
    replication_factor: int = 1
    topic_prefix: str = "civsync"
    capture: CaptureSettings | None = None

    def build(self, registry: SchemaRegistry) -> ChangePublisher:
        return ChangePublisher(
            self.kafka,
            registry,
            partitions=self.partitions,
            replication_factor=self.replication_factor,
            topic_prefix=self.topic_prefix,
            capture=self.capture,
        )


class PublisherProcess:
    """``ChangePublisher``'s interface, with the publisher in a child process."""

    def __init__(self, spec: PublisherSpec) -> None:
        self._spec = spec
        self._context = multiprocessing.get_context("spawn")  # no fork of librdkafka threads
        self._child: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self._batch: list[tuple[str, Any]] = []
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}
        self.published = 0
        self.quarantined = 0

    def publish(self, event: ChangeEvent) -> None:
        self._batch.append(("publish", event))
        if len(self._batch) >= _BATCH:
            self._send_batch()

    def quarantine(self, reason: str, detail: str, **where: Any) -> None:
        self._batch.append(("quarantine", (reason, detail, where)))

    def flush(self, timeout_s: float = 60.0) -> None:
        """Return once Kafka has every record sent so far; raise the child's error if any."""
        self._send_batch()
        self._ask(("flush", timeout_s), timeout_s + _REPLY_GRACE_S)

    def renew(self) -> None:
        """A new publisher, as a restarted process has: the child is replaced, and what it
        still queued is dropped (capture reads it again from the slot's confirmed position)."""
        self.close()
        pipe, child_end = self._context.Pipe()
        self._child = self._context.Process(
            target=_serve, args=(child_end, self._spec), name="capture-publisher", daemon=True
        )
        self._child.start()
        child_end.close()
        self._pipe, self._batch, self._counted = pipe, [], {}
        self._ask(("ready", None), 120.0)  # its clients are built: errors show here

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._child is not None:
            self._child.join(5.0)
            if self._child.is_alive():
                self._child.kill()
                self._child.join()
            self._child = None

    def _send_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            self._require_pipe().send(batch)
        except (OSError, EOFError) as exc:
            raise PublisherGoneError(f"the publisher process is gone: {exc}") from exc

    def _ask(self, request: tuple[str, Any], wait_s: float) -> None:
        pipe = self._require_pipe()
        try:
            pipe.send([request])
            if not pipe.poll(wait_s):
                raise PublisherGoneError(f"the publisher process did not answer in {wait_s:.0f}s")
            error, published, quarantined, counted = pipe.recv()
        except (OSError, EOFError) as exc:
            raise PublisherGoneError(f"the publisher process is gone: {exc}") from exc
        self.published, self.quarantined = published, quarantined
        metrics.add_counted(self._counted, counted)
        self._counted = counted
        if error is not None:
            raise error

    def _require_pipe(self) -> Connection:
        if self._pipe is None:
            raise PublisherGoneError("the publisher process was not started")
        return self._pipe


def _serve(pipe: Connection, spec: PublisherSpec) -> None:
    """The child: publish what arrives, in order; answer each request with the first error
    since the last answer, the counts, and the counters. Ends when the parent's end closes."""
    registry = SchemaRegistry(spec.registry)
    try:
        publisher = spec.build(registry)
    except Exception as exc:  # told to the parent, which starts another child
        with contextlib.suppress(EOFError, OSError):
            pipe.recv()  # "ready"
            pipe.send((_portable(exc), 0, 0, {}))
        registry.close()
        return
    operations: dict[str, Callable[[Any], None]] = {
        "publish": publisher.publish,
        "quarantine": lambda args: publisher.quarantine(args[0], args[1], **args[2]),
        "flush": publisher.flush,
        "ready": lambda _: None,
    }
    error: BaseException | None = None
    try:
        while True:
            for kind, item in pipe.recv():
                if error is None:
                    try:
                        operations[kind](item)
                    except Exception as exc:  # raised again in the parent
                        error = exc
                if kind in ("flush", "ready"):
                    counts = (publisher.published, publisher.quarantined, metrics.counted())
                    pipe.send((_portable(error), *counts))
                    error = None
    except (EOFError, OSError):
        pass  # the parent is gone, or renewed its publisher
    registry.close()


def _portable(error: BaseException | None) -> BaseException | None:
    """``error`` as it can cross the pipe (an exception that does not pickle becomes a
    ``RetriableError`` with its text)."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own exception, just made
    except Exception:  # any pickling failure
        return RetriableError(f"{type(error).__name__}: {error}")
    return error
