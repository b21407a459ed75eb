"""The publisher process (``[capture] separate_publisher``): events reach it in stream order,
``flush`` answers only once it has flushed, its errors are raised in capture as the same
class, its counters reach capture's, and a child that cannot start says why. The child is a
real spawned process; its ``ChangePublisher`` is a stand-in that writes to a file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import HttpUrl

from connectors.capture import metrics
from connectors.capture.handoff import PublisherProcess, PublisherSpec
from connectors.registry import SchemaRegistry
from connectors.settings import KafkaSettings, RegistrySettings
from engine.errors import FatalError, RetriableError
from engine.events import ChangeEvent, Hlc, Op, Source


class _FileError(RetriableError):
    """A stand-in for a broker that is away."""


class _FilePublisher:
    """Writes each event id to ``path`` on flush; an event id starting with ``refuse``
    raises, as a broker away would."""

    def __init__(self, path: Path) -> None:
        self.path, self.published, self.quarantined = path, 0, 0
        self.queued: list[str] = []

    def publish(self, event: ChangeEvent) -> None:
        if event.event_id.startswith("refuse"):
            raise _FileError(f"refused {event.event_id}")
        self.queued.append(event.event_id)
        self.published += 1
        metrics.events(event.source.store, event.table_id, str(event.op)).inc()

    def quarantine(self, reason: str, detail: str, **where: Any) -> None:
        self.queued.append(f"quarantine:{reason}")
        self.quarantined += 1

    def flush(self, timeout_s: float = 60.0) -> None:
        with self.path.open("a") as out:
            out.writelines(json.dumps(item) + "\n" for item in self.queued)
        self.queued.clear()


@dataclass(frozen=True)
class _FileSpec(PublisherSpec):
    path: str = ""
    broken: bool = False

    def build(self, registry: SchemaRegistry) -> Any:
        if self.broken:
            raise FatalError("no such topic prefix")
        return _FilePublisher(Path(self.path))


def _spec(path: Path, *, broken: bool = False) -> _FileSpec:
    """A spec whose registry is never asked (plain HTTP: no CA file needed to make its
    client); the file publisher stands in for Kafka."""
    registry = RegistrySettings(url=HttpUrl("http://127.0.0.1:8081/apis/ccompat/v7"))
    return _FileSpec(KafkaSettings(), registry, 3, path=str(path), broken=broken)


def _event(event_id: str) -> ChangeEvent:
    source = Source("civil", "civil", "public", "handoff_person", 16, 16, 7, 1_717_000_000_000)
    return ChangeEvent(
        event_id,
        Op.CREATE,
        source,
        {"id": 1},
        None,
        {"id": 1, "name": "Nguyễn Thị Hương"},
        {"id": "bigint", "name": "text"},
        Hlc(1_717_000_000_000, 0, "civil"),
    )


def _written(path: Path) -> list[str]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_events_are_published_in_order_and_flush_waits_for_them(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    counter = metrics.events("civil", "public.handoff_person", "c")
    before = counter._value.get()
    publisher = PublisherProcess(_spec(path))
    try:
        publisher.renew()
        for n in range(450):  # more than two batches
            publisher.publish(_event(f"civil:{n}"))
            if n == 300:
                publisher.quarantine("capture.malformed_change", "bad", payload="00")
        assert _written(path) == []  # nothing is flushed before flush
        publisher.flush()
        ids = [f"civil:{n}" for n in range(450)]
        assert _written(path) == [*ids[:301], "quarantine:capture.malformed_change", *ids[301:]]
        assert (publisher.published, publisher.quarantined) == (450, 1)
        assert counter._value.get() - before == 450  # counted here, in capture's process
    finally:
        publisher.close()


def test_an_error_in_the_child_is_raised_at_flush_and_a_renewed_child_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.jsonl"
    publisher = PublisherProcess(_spec(path))
    try:
        publisher.renew()
        publisher.publish(_event("civil:1"))
        publisher.publish(_event("refuse:2"))
        publisher.publish(_event("civil:3"))  # after the error: not published
        with pytest.raises(_FileError, match="refused refuse:2"):
            publisher.flush()
        assert _written(path) == []  # the child stopped at the error, flushed nothing
        publisher.renew()  # as the next attempt does
        publisher.publish(_event("civil:1"))
        publisher.flush()
        assert _written(path) == ["civil:1"]
    finally:
        publisher.close()


def test_a_child_that_cannot_start_says_why(tmp_path: Path) -> None:
    publisher = PublisherProcess(_spec(tmp_path / "out.jsonl", broken=True))
    try:
        with pytest.raises(FatalError, match="no such topic prefix"):
            publisher.renew()
    finally:
        publisher.close()
