"""``civsync status``: one view of a running engine, read from the services themselves.

Nothing here asks the civsync processes: a part is known to run by what it holds, so the view
is the same whichever machine runs which part. A capture runs while its replication slot is
active; the merger and each sink while their consumer group has members. Lag is the slot's
unconfirmed WAL (bytes, and PostgreSQL's flush lag in seconds for its walsender), and each
group's records still to read per partition. Throughput is what each topic took in over the
last minute. Held conflicts are read from ``civsync.conflicts``, people waiting for a required
column from each store's ``_civsync.waiting``, quarantine counts from ``civsync.quarantine``.

The engine is unhealthy when a part is not running, a slot is missing or lost, or a store or
Kafka cannot be reached; ``civsync status`` then exits 1.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from civsync.capture_cli import slot_name
from civsync.config import CivsyncSettings
from connectors.capture.slot import ReplicationSlot
from connectors.kafka.admin import TopicAdmin
from connectors.merge.records import MergeTopics
from connectors.merge.retry import quarantined
from connectors.merge.sink import sink_tables
from connectors.merge.steward import history
from connectors.merge.target import waiting_people
from connectors.postgres import connect
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.registry import SchemaRegistry
from engine.errors import CivsyncError

_MINUTE_MS = 60_000


@dataclass
class Capture:
    store: str
    slot: str
    running: bool
    lag_bytes: int | None
    lag_s: float | None
    wal_status: str | None


@dataclass
class Group:
    part: str
    group: str
    running: bool
    members: int
    lag: int
    lag_by_partition: dict[str, int]  # "topic[partition]" -> records still to read


@dataclass
class Status:
    captures: list[Capture] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    written_last_minute: dict[str, int] = field(default_factory=dict)  # topic -> records
    held_conflicts: int = 0
    waiting_people: dict[str, int] = field(default_factory=dict)  # store -> people
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> records
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"healthy": self.healthy}


def engine_status(settings: CivsyncSettings) -> Status:
    """The state of the engine ``settings`` describes."""
    status = Status()
    for store in settings.stores():
        _capture(settings, store, status)
    admin, merge = TopicAdmin(settings.kafka), settings.merge
    parts = {"merger": merge.group} | {
        f"sink-{store}": f"{merge.topic_prefix}-sink-{store}" for store in settings.stores()
    }
    try:
        for part, group in parts.items():
            _group(admin, part, group, status)
        topics, names = MergeTopics(merge.topic_prefix), set(admin.names())
        since = time.time_ns() // 1_000_000 - _MINUTE_MS
        for name in sorted(names):
            if name.startswith(f"{merge.topic_prefix}.") and name != topics.state.name:
                status.written_last_minute[name] = admin.written_since(name, since)
        with SchemaRegistry(settings.registry) as registry:
            if topics.conflicts.name in names:
                conflicts = history(settings.kafka, registry, topics)
                status.held_conflicts = sum(1 for c in conflicts.values() if c.pending)
            if QUARANTINE_TOPIC in names:
                reasons = Counter(q.record["reason"] for q in quarantined(settings.kafka, registry))
                status.quarantined = dict(sorted(reasons.items()))
    except CivsyncError as exc:
        status.problems.append(f"Kafka: {exc}")
    return status


def _capture(settings: CivsyncSettings, store: str, status: Status) -> None:
    slot = slot_name(settings, store)
    try:
        with connect(settings.stores()[store], autocommit=True) as conn:
            state = ReplicationSlot(slot).state(conn)
            lag_s = None
            if state is not None and state.active_pid is not None:
                row = conn.execute(
                    "SELECT extract(epoch FROM flush_lag)::float8 FROM pg_stat_replication"
                    " WHERE pid = %s",
                    (state.active_pid,),
                ).fetchone()
                lag_s = None if row is None or row[0] is None else float(str(row[0]))
            waiting = waiting_people(conn, sink_tables(settings.merge, store))
    except CivsyncError as exc:
        status.problems.append(f"{store} store: {exc}")
        return
    status.waiting_people[store] = len(waiting)
    if state is None:
        status.captures.append(Capture(store, slot, False, None, None, None))
        status.problems.append(f"capture {store}: no slot {slot} (not started, or dropped)")
        return
    running = state.active_pid is not None
    lag_s = 0.0 if state.lag_bytes == 0 else lag_s
    status.captures.append(Capture(store, slot, running, state.lag_bytes, lag_s, state.wal_status))
    if state.wal_status == "lost":
        status.problems.append(f"capture {store}: slot {slot} is lost (WAL removed)")
    elif not running:
        status.problems.append(f"capture {store}: not running (slot {slot} is inactive)")


def _group(admin: TopicAdmin, part: str, group: str, status: Status) -> None:
    members = admin.group_members(group)
    lag = admin.group_lag(group)
    by_partition = {f"{topic}[{p}]": n for (topic, p), n in sorted(lag.items()) if n}
    status.groups.append(Group(part, group, members > 0, members, sum(lag.values()), by_partition))
    if members == 0:
        status.problems.append(f"{part}: not running (consumer group {group} has no members)")
