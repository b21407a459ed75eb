"""Prometheus metrics of the merger and the sinks (served by ``connectors.capture.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from connectors.capture.metrics import record_step, serve

EDITS = Counter("civsync_merge_edits", "Person edits merged", ["origin"])
CONFLICTS = Counter("civsync_merge_conflicts", "Conflict records", ["field", "rule", "decision"])
QUARANTINED = Counter("civsync_merge_quarantined", "Records sent to quarantine", ["reason"])
PIN_WARNINGS = Counter(
    "civsync_merge_pin_warnings", "PIN findings that let the edit flow", ["code"]
)
LINKS = Counter("civsync_merge_links", "People moved to a new key by an identity link")
TRANSACTIONS = Counter("civsync_merge_transactions", "Kafka transactions committed")
APPLIED = Counter("civsync_sink_rows", "Rows written to a store by the sink", ["store"])
STALE = Counter(
    "civsync_sink_stale", "Person records not applied: the store has a newer version", ["store"]
)
LOCK_RETRIES = Counter(
    "civsync_sink_lock_retries",
    "Batches rolled back and retried: another transaction held a row lock",
    ["store"],
)
WAITING = Gauge(
    "civsync_sink_waiting_people",
    "People not inserted yet: a column their table requires has no merged value",
    ["store"],
)

__all__ = [
    "APPLIED",
    "CONFLICTS",
    "EDITS",
    "LINKS",
    "LOCK_RETRIES",
    "PIN_WARNINGS",
    "QUARANTINED",
    "STALE",
    "TRANSACTIONS",
    "WAITING",
    "record_step",
    "serve",
]
