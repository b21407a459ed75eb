"""Prometheus metrics of the merger and the sinks (served by ``connectors.capture.metrics``).

Counters are declared without ``_total`` (prometheus_client adds it); durations are
histograms in seconds, updated once per batch, never per record.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from connectors.capture.metrics import record_step, serve

# A batch is up to [merge] batch records (2,000 by default) at about 0.5 ms each.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EDITS = Counter("civsync_merge_edits", "Person edits merged", ["origin"])
CONFLICTS = Counter("civsync_merge_conflicts", "Conflict records", ["field", "rule", "decision"])
QUARANTINED = Counter("civsync_merge_quarantined", "Records sent to quarantine", ["reason"])
PIN_WARNINGS = Counter(
    "civsync_merge_pin_warnings", "PIN findings that let the edit flow", ["code"]
)
LINKS = Counter("civsync_merge_links", "People moved to a new key by an identity link")
TRANSACTIONS = Counter("civsync_merge_transactions", "Kafka transactions committed")
MERGE_BATCH = Histogram(
    "civsync_merge_batch_seconds",
    "Time to merge one consumed batch and commit its Kafka transaction",
    buckets=BATCH_BUCKETS,
)
APPLIED = Counter("civsync_sink_rows", "Rows written to a store by the sink", ["store"])
STALE = Counter(
    "civsync_sink_stale", "Person records not applied: the store has a newer version", ["store"]
)
LOCK_RETRIES = Counter(
    "civsync_sink_lock_retries",
    "Batches rolled back and retried: another transaction held a row lock",
    ["store"],
)
SINK_QUARANTINED = Counter(
    "civsync_sink_quarantined", "Person records sent to quarantine", ["store", "reason"]
)
SINK_BATCH = Histogram(
    "civsync_sink_batch_seconds",
    "Time to apply one consumed batch to the store, in one transaction or more",
    ["store"],
    buckets=BATCH_BUCKETS,
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
    "MERGE_BATCH",
    "PIN_WARNINGS",
    "QUARANTINED",
    "SINK_BATCH",
    "SINK_QUARANTINED",
    "STALE",
    "TRANSACTIONS",
    "WAITING",
    "record_step",
    "serve",
]
