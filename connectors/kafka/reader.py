"""Reading a topic from the beginning to its current end, outside any consumer group.

For state restores and for tools (conflict review) that need "everything committed so far".
Reads committed records only; an open transaction is waited for, up to ``timeout_s``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from connectors.kafka.errors import KafkaRetriableError, RefusalWatch, translate
from connectors.settings import KafkaSettings


def read_to_end(
    kafka: KafkaSettings,
    topic: str,
    partitions: list[int] | None = None,
    *,
    start: Mapping[int, int] | None = None,
    timeout_s: float = 120.0,
) -> Iterator[Message]:
    """Every committed record of ``partitions`` (default: all), from the ``start`` offset of
    each (default: its beginning), up to the end seen at the start. A broker that refuses
    the login or the TLS connection is a fatal error that says so (``RefusalWatch``)."""
    watch = RefusalWatch()
    reader = Consumer(
        kafka.client_config()
        | {
            "group.id": f"civsync-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "error_cb": watch,
        }
    )
    ask_s = min(30.0, timeout_s)  # for the topic's metadata and each partition's end
    try:
        if partitions is None:
            metadata = reader.list_topics(topic, timeout=ask_s).topics[topic]
            if metadata.error is not None:
                raise translate(metadata.error, f"reading {topic}")
            partitions = sorted(metadata.partitions)
        ends = {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=ask_s)[1]
            for p in partitions
        }
        first = {p: (start or {}).get(p, OFFSET_BEGINNING) for p in partitions}
        pending = {p for p in partitions if ends[p] > max(first[p], 0)}
        reader.assign([TopicPartition(topic, p, first[p]) for p in sorted(pending)])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise KafkaRetriableError(
                    f"reading {topic} partitions {sorted(pending)} to their end took over "
                    f"{timeout_s:.0f}s (a transaction left open by a crashed process?)"
                )
            for message in reader.consume(1000, 0.2):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise translate(error, f"reading {topic}")
            positions = reader.position([TopicPartition(topic, p) for p in pending])
            pending -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
    except KafkaException as exc:
        reader.poll(0)  # serve the error callbacks the failed call left queued
        raise watch.translate(exc, f"reading {topic}") from exc
    finally:
        reader.close()
