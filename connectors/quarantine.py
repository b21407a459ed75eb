"""The quarantine record: input civsync could not use, with a machine-readable reason.

Every stage (capture, merge, apply) builds its records here, so ``civsync.quarantine``
has one shape whoever writes to it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from connectors.kafka.admin import TopicSpec
from connectors.kafka.avro import AvroTopic
from schemas import load

QUARANTINE_TOPIC = "civsync.quarantine"
QUARANTINE = AvroTopic(QUARANTINE_TOPIC, load("quarantine_key"), load("quarantine_record"))


def quarantine_spec(partitions: int, replication_factor: int = 1) -> TopicSpec:
    """The quarantine topic, shared by every stage: created with ``partitions`` if missing,
    accepted with whatever partitions it already has."""
    return TopicSpec(QUARANTINE_TOPIC, partitions, replication_factor, fixed_partitions=False)


def quarantine_record(
    reason: str,
    detail: str,
    *,
    stage: str,
    payload: str,
    store: str | None = None,
    table: str | None = None,
    lsn: int | None = None,
    txid: int | None = None,
    event_id: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key, value) of a quarantine record; the key is the event id, else store and LSN."""
    record = {
        "reason": reason,
        "detail": detail,
        "stage": stage,
        "store": store,
        "table": table,
        "lsn": lsn,
        "txid": txid,
        "event_id": event_id,
        "payload": payload,
        "ts_ms": time.time_ns() // 1_000_000,
    }
    return {"id": event_id or f"{store}:{lsn}"}, record


def as_json(record: Any) -> str:
    """A payload as JSON text, keeping non-ASCII text readable."""
    return json.dumps(record, ensure_ascii=False, default=str)
