"""Hostile rows through the whole engine: each is applied to the other store or quarantined
with a machine-readable reason, no part stops, and good rows written after them arrive.

The rows are valid for PostgreSQL (the stores' own checks and domains accept them) and
hostile to civsync. A deterministic generator (``random.Random(SEED)``) writes about 150 of
them into both stores of the migrated profile while the whole engine runs (capture of both
stores, the merger, both sinks, under a supervisor), each in its own transaction. The classes,
and what becomes of each row:

- **huge text**: a value of about 2 MB in either store is refused at capture
  (``capture.too_large``: Kafka takes at most 1 MB per record), one of 600 KB by the merger
  (``value.too_large``: its state and history hold a value four times), one of 60-120 KB is
  applied;
- **control characters** (every C0 control but NUL, which PostgreSQL's text refuses, DEL,
  line and paragraph separators, bidirectional overrides, BOM, zero-width joiner, lone and
  decomposed combining marks, astral characters): applied, in NFC;
- **invalid PINs** in civil-status (too short or long, letters, a trailing newline, a leading
  space, full-width digits, blank): ``pin.malformed``; the population store's ``pin`` domain
  takes only twelve digits;
- **broken place JSON** (``jsonb`` objects with a ``text`` key, as the ``place`` domain asks,
  and anything else: text that is no string, codes that are objects or huge numbers, unknown
  codes and code lists, a ``current`` that is no object, a ``split-default`` without a unit,
  nesting 100-800 deep): applied as they are; arrays of 30,000 numbers (236 KB):
  ``value.too_large``;
- **impossible dates** (29 February of a common year, 31 April, year 0) in the ``partial_date``
  columns: ``date.invalid``; a typed ``date`` outside Avro's range (``infinity``, 5874897 AD,
  4713 BC) on an act: ``capture.encoding_failed``;
- **unknown columns** added to both person tables while the engine runs (numeric, floats,
  integers, dates, timestamps, arrays, jsonb, bytea, money, interval) with extreme values
  (numerics of 1,000 digits, ±Infinity, NaN, the integer limits): the mapped columns are
  applied; a numeric NaN or Infinity, or a date or timestamp Avro cannot hold, is
  ``capture.encoding_failed``; a column whose name is no Avro name (``ghi chú``) makes its
  table's changes ``capture.encoding_failed`` until it is dropped;
- **NULLs everywhere**: a person with a PIN and nothing but a blank name is applied, and so
  is a seeded person whose every nullable shared column civil-status empties; a birth without
  a PIN reaches the population store's inbox of births; a civil-status person without a PIN
  and without the birth date and sex a PIN is issued from is ``merge.incomplete``;
- **hostile corrections** (acts naming the field they change): an impossible date is
  ``date.invalid``, a field civsync has no policy for ``merge.unknown_field``, a spouse that is
  no PIN ``apply.rejected`` by the population store's ``pin`` domain, text applied.

Which of these is quarantined is checked against what each row was expected to become.
"""

from __future__ import annotations

import json
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from connectors.merge.retry import quarantined
from connectors.postgres import Connection
from engine.mapping import MAX_VALUE_BYTES
from engine.places import PLACE_FIELDS
from tests.integration.merge_support import SHARED
from tests.integration.profile_support import ACT, BINH, CHI, Profile

SEED = 15
APPLIED = "applied"
_SETTLE_S = 300.0  # generous: two shared cores, every part and every service on them
_REASON = re.compile(r"[a-z]+\.[a-z_]+")
_MB = 1_000_000
_UNKNOWN_COLUMNS = {
    "fuzz_amount": "numeric",
    "fuzz_ratio": "double precision",
    "fuzz_single": "real",
    "fuzz_small": "smallint",
    "fuzz_big": "bigint",
    "fuzz_day": "date",
    "fuzz_at": "timestamp",
    "fuzz_at_tz": "timestamptz",
    "fuzz_tags": "text[]",
    "fuzz_doc": "jsonb",
    "fuzz_raw": "bytea",
    "fuzz_money": "money",
    "fuzz_span": "interval",
}
# (column, value, what capture does with it): extreme values of the unknown columns
_EXTREMES = [
    ("fuzz_amount", "NaN", "capture.encoding_failed"),
    ("fuzz_amount", "Infinity", "capture.encoding_failed"),
    ("fuzz_amount", "9" * 1000, APPLIED),
    ("fuzz_amount", "-0." + "0" * 900 + "1", APPLIED),
    ("fuzz_ratio", "Infinity", APPLIED),
    ("fuzz_ratio", "-Infinity", APPLIED),
    ("fuzz_ratio", "NaN", APPLIED),
    ("fuzz_ratio", "1.7976931348623157e308", APPLIED),
    ("fuzz_ratio", "4.9e-324", APPLIED),
    ("fuzz_single", "3.4028235e38", APPLIED),
    ("fuzz_small", "-32768", APPLIED),
    ("fuzz_big", "9223372036854775807", APPLIED),
    ("fuzz_big", "-9223372036854775808", APPLIED),
    ("fuzz_day", "infinity", "capture.encoding_failed"),
    ("fuzz_day", "5874897-12-31", "capture.encoding_failed"),
    ("fuzz_day", "4713-01-01 BC", "capture.encoding_failed"),
    ("fuzz_day", "9999-12-31", APPLIED),
    ("fuzz_at", "infinity", "capture.encoding_failed"),
    ("fuzz_at", "294276-12-31 23:59:59", "capture.encoding_failed"),
    ("fuzz_at_tz", "-infinity", APPLIED),
    ("fuzz_tags", '{"a,b",NULL,"\\\\",""}', APPLIED),
    ("fuzz_doc", "[" * 500 + "]" * 500, APPLIED),
    ("fuzz_raw", "\\x" + "00ff" * 20_000, APPLIED),
    ("fuzz_money", "-92233720368547758.08", APPLIED),
    ("fuzz_span", "178000000 years", APPLIED),
]
_CONTROLS = [chr(c) for c in range(1, 32)] + ["\x7f", "\u2028", "\u2029", "\u202e", "\ufeff"]
_CONTROLS += ["\u200d", "\u0301", "\u0323", "\U0001f600", "\U00020000", "Ð", "\u00a0", "\\"]
_NOTIFIED = {"full_name", "birth_date", "sex", "place_of_birth", "ethnicity", "nationality"}
_NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Chi", "Phạm Thuý Dung", "Đỗ Khánh"]


@dataclass
class Hostile:
    """One hostile row: its class, where it was written, the person it is about (a PIN or a
    provisional key), its transaction, what it should become (``APPLIED`` or a quarantine
    reason), and when applied, the other store's columns as they should read (text)."""

    kind: str
    store: str
    table: str
    row: dict[str, Any]
    expected: str
    person: str = ""
    txid: int = 0
    reaches: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Generator:
    """Deterministic hostile rows; each new person gets a PIN no other run of this test uses."""

    run: int  # 100-999, from the profile's unique prefix
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))  # noqa: S311
    serial: int = 0

    def pin(self, born: str | None = None, sex: str | None = None) -> str:
        """A well-formed PIN of a new person: province 001, the century and sex digit and the
        year of ``born`` (else of 2000), a serial of this run."""
        self.serial += 1
        year = int(born[:4]) if born and born[:4].isdigit() and int(born[:4]) >= 1900 else 2000
        century = 2 * (year // 100 - 19) + (sex == "female")
        return f"001{century}{year % 100:02d}{self.run:03d}{self.serial:03d}"

    def name(self) -> str:
        return self.rng.choice(_NAMES)

    def born(self) -> str:
        return f"{self.rng.randrange(1930, 2025)}-{self.rng.randrange(1, 13):02d}-15"

    def person(self, **values: Any) -> dict[str, Any]:
        """A person row both tables take: a new PIN, a name, a birth date, a sex; ``values``
        override any of them."""
        sex = self.rng.choice(["male", "female"])
        born = values.get("birth_date", self.born())
        row = {"pin": self.pin(born, sex), "full_name": self.name(), "birth_date": born}
        return row | {"sex": sex} | values

    def controls(self, size: int) -> str:
        """Text of ``size`` characters, control characters and marks among Vietnamese."""
        pool = [*_CONTROLS, *"aăâđeêioôơuưy ", "e\u0302\u0301", "Hoà", "Thuý"]
        return "".join(self.rng.choice(pool) for _ in range(size))


def _hostile_rows(gen: Generator) -> Iterator[Hostile]:
    """The hostile rows, class by class (see the module docstring), in writing order; the
    unknown columns, the acts and the emptied seeded person are written by ``_write_all``."""
    rng = gen.rng
    # huge text
    for store, column in (("civil", "full_name"), ("population", "full_name")):
        big = ("Nguyễn Thị Huyền " * (2 * _MB // 17))[: 2 * _MB]
        yield _row("huge text", store, gen.person(**{column: big}), "capture.too_large")
    for store, column in (("civil", "ethnicity"), ("population", "nationality")):
        yield _row("huge text", store, gen.person(**{column: "Kinh " * 24_000}), APPLIED)
        # under Kafka's limit at capture, but four times over it in the merger's records
        too_big = gen.person(**{column: "Kinh " * 120_000})
        yield _row("huge text", store, too_big, "value.too_large")
    place = {"text": "xã " + "Tân Lập " * 7_500, "code": "25846", "code_list": "pre-2025"}
    yield _row("huge text", "civil", gen.person(hometown=json.dumps(place)), APPLIED)
    # control characters
    for n in range(40):
        store = ("civil", "population")[n % 2]
        values = {"full_name": gen.controls(rng.randrange(1, 60))}
        values |= {"ethnicity": gen.controls(5), "nationality": gen.controls(3)}
        values["hometown"] = json.dumps({"text": gen.controls(20), "note": gen.controls(9)})
        yield _row("control characters", store, gen.person(**values), APPLIED)
    # invalid PINs
    for pin in [
        "00109000010",
        "0010900001011",
        "00109000010A",
        "001090000101\n",
        " 001090000101",
        "\uff10\uff10\uff11" + "\uff10" * 9,
        "001-090-000101",
        " ",
        "0" * 2000,
    ]:
        yield _row("invalid PIN", "civil", gen.person(pin=pin), "pin.malformed")
    # broken place JSON
    for document in _broken_places(rng):
        huge = len(document.encode()) > MAX_VALUE_BYTES
        for store in ("civil", "population"):
            column = rng.choice(["place_of_birth", "hometown", "permanent_residence"])
            row = gen.person(**{column: document})
            yield _row("broken place JSON", store, row, "value.too_large" if huge else APPLIED)
    # impossible dates
    for n, day in enumerate(["2023-02-29", "2023-04-31", "1900-02-29", "0000", "0000-01-01"]):
        store = ("civil", "population")[n % 2]
        yield _row("impossible date", store, gen.person(birth_date=day), "date.invalid")
        died = gen.person(date_of_death=day)
        yield _row("impossible date", ("population", "civil")[n % 2], died, "date.invalid")
    # NULLs everywhere
    nobody = {"pin": None, "full_name": "", "birth_date": None, "sex": None}
    yield _row("NULLs everywhere", "civil", nobody, "merge.incomplete")
    yield _row("NULLs everywhere", "civil", nobody | {"pin": ""}, "merge.incomplete")
    birth = gen.person(pin=None, full_name=gen.controls(12))  # a birth awaiting its PIN
    yield _row("NULLs everywhere", "civil", birth, APPLIED)
    for store in ("civil", "population"):
        blank = {"pin": gen.pin(), "full_name": ""}
        yield _row("NULLs everywhere", store, blank, APPLIED)
    # extreme numbers, as text
    for text in ["1e309", "-0", "9" * 500, "NaN", "-Infinity", "0x7fffffffffffffff"]:
        values = {"full_name": text, "ethnicity": text}
        yield _row(
            "extreme numbers", rng.choice(["civil", "population"]), gen.person(**values), APPLIED
        )


def _row(kind: str, store: str, row: dict[str, Any], expected: str) -> Hostile:
    table = "person" if store == "civil" else "citizen"
    return Hostile(kind, store, table, row, expected)


def _broken_places(rng: random.Random) -> Iterator[str]:
    """Place values the ``place`` domain takes (an object with ``text``), broken otherwise."""
    documents: list[Any] = [
        {"text": 5},
        {"text": None},
        {"text": ["xã", "phường"]},
        {"text": {"nested": True}},
        {"text": "x", "code": {"a": 1}},
        {"text": "x", "code": 10**40},
        {"text": "x", "code": "99999", "code_list": "pre-2025"},
        {"text": "x", "code": "00001", "code_list": "1999"},
        {"text": "x", "code": "00001"},
        {"text": "x", "current": "nope"},
        {"text": "x", "current": {"ward_code": 5}},
        {"text": "x", "quality": "split-default"},
        {"text": "x", "quality": "split-default", "current": [1, 2]},
        {"text": "x", "quality": "resolved", "code": None},
        {"text": "", "": "", "\u0301": "\u0301"},
        {"text": "x", "codes": [rng.randrange(10**6) for _ in range(30_000)]},
    ]
    yield from (json.dumps(d, ensure_ascii=False) for d in documents)
    yield '{"text": "x", "n": 1e400, "m": -0.0, "big": 123456789012345678901234567890}'
    for depth in (100, 400, 800):
        nested = "[" * depth + "]" * depth
        yield f'{{"text": "x", "quality": "split-default", "deep": {nested}}}'


# --- writing -------------------------------------------------------------------------------


def _connection(profile: Profile, store: str) -> Connection:
    return profile.civil if store == "civil" else profile.population


def _insert(conn: Connection, table: str, row: dict[str, Any], returning: str) -> tuple[Any, int]:
    """Insert ``row`` in a transaction of its own: the ``returning`` column, and the
    transaction's id as pgoutput gives it (32 bits)."""
    found = conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}, pg_current_xact_id()::text").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
            sql.Identifier(returning),
        ),
        list(row.values()),
    ).fetchone()
    assert found is not None
    return found[0], int(str(found[1])) % 2**32


def _shared_text(conn: Connection, table: str, key: str, value: Any) -> dict[str, str | None]:
    """The row's shared columns as their text, as the other store should end up holding
    them: text in NFC (capture normalises it, not JSON), a legacy ``unknown`` sex as none."""
    columns = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in SHARED)
    query = sql.SQL("SELECT {} FROM {} WHERE {} = %s").format(
        columns, sql.Identifier(table), sql.Identifier(key)
    )
    found = conn.execute(query, (value,)).fetchone()
    assert found is not None
    texts = {c: None if t is None else str(t) for c, t in zip(SHARED, found, strict=True)}
    if texts.get("sex") == "unknown":
        texts["sex"] = None
    return {
        c: t if t is None or c in PLACE_FIELDS else unicodedata.normalize("NFC", t)
        for c, t in texts.items()
    }


def _write(profile: Profile, hostile: Hostile) -> Hostile:
    """Write ``hostile``; note its transaction, person and, if it is to be applied, what the
    other store should read."""
    conn = _connection(profile, hostile.store)
    key = "id" if hostile.table == "person" else "pin"
    written, hostile.txid = _insert(conn, hostile.table, hostile.row, key)
    pin = hostile.row.get("pin")
    hostile.person = pin if pin else f"civil#{written}"
    if hostile.expected == APPLIED:
        hostile.reaches = _shared_text(conn, hostile.table, key, written)
    return hostile


def _write_unknown_columns(profile: Profile, gen: Generator) -> Iterator[Hostile]:
    """Columns the mapping does not know, added to both person tables while the engine runs,
    with extreme values; then a column whose name is no Avro name, added and dropped."""
    for conn, table in ((profile.civil, "person"), (profile.population, "citizen")):
        added = ", ".join(f"ADD COLUMN {name} {kind}" for name, kind in _UNKNOWN_COLUMNS.items())
        conn.execute(f"ALTER TABLE {table} {added}")
    for n, (column, value, expected) in enumerate(_EXTREMES):
        store = ("civil", "population")[n % 2]
        yield _write(
            profile, _row("unknown column", store, gen.person(**{column: value}), expected)
        )
    for conn, table in ((profile.civil, "person"), (profile.population, "citizen")):
        conn.execute(f'ALTER TABLE {table} ADD COLUMN "ghi chú" text')
        store = "civil" if table == "person" else "population"
        row = gen.person(**{"ghi chú": "không phải tên Avro"})
        yield _write(profile, _row("unknown column", store, row, "capture.encoding_failed"))
        conn.execute(f'ALTER TABLE {table} DROP COLUMN "ghi chú"')


def _write_corrections(profile: Profile, gen: Generator) -> Iterator[Hostile]:
    """Acts of civil-status with hostile values: corrections of a birth act, and deaths
    registered on dates Avro cannot hold, each about a new person of its own."""
    corrections = [
        ("birth_date", "2023-02-30", "date.invalid"),
        ("no_such_field", "x", "merge.unknown_field"),
        ("spouse", "not a PIN", "apply.rejected"),
        ("full_name", gen.controls(40), APPLIED),
        ("ethnicity", "Kinh " * 18_000, APPLIED),
    ]
    for n, (name, value, expected) in enumerate(corrections):
        person_id, born = _registered_person(profile, gen)
        row = ACT | {"number": f"fuzz-c{n}", "person_id": person_id, "pin": born["pin"]}
        row |= {"corrects": "birth_registration", "corrected_id": born["act"]}
        row |= {"field": name, "old_value": None, "new_value": value, "reason": "fuzz"}
        hostile = Hostile("hostile correction", "civil", "correction", row, expected)
        _, hostile.txid = _insert(profile.civil, "correction", row, "id")
        hostile.person = born["pin"]
        if expected == APPLIED:
            hostile.reaches = {name: unicodedata.normalize("NFC", value)}
        yield hostile
    for n, day in enumerate(["infinity", "5874897-12-31", "4713-01-01 BC"]):
        person_id, born = _registered_person(profile, gen)
        row = ACT | {"number": f"fuzz-d{n}", "registered_on": day, "person_id": person_id}
        row |= {"pin": born["pin"], "date_of_death": "2025-09"}
        expected = "capture.encoding_failed"
        hostile = Hostile("impossible date", "civil", "death_registration", row, expected)
        _, hostile.txid = _insert(profile.civil, "death_registration", row, "id")
        hostile.person = born["pin"]
        yield hostile


def _registered_person(profile: Profile, gen: Generator) -> tuple[int, dict[str, Any]]:
    """A new, good civil-status person and their birth act: the person's id, PIN and act."""
    person = gen.person()
    person_id, _ = _insert(profile.civil, "person", person, "id")
    act = ACT | {"number": f"fuzz-b{person['pin']}", "person_id": person_id}
    act |= {k: person[k] for k in ("pin", "full_name", "birth_date", "sex")}
    act_id, _ = _insert(profile.civil, "birth_registration", act, "id")
    return int(person_id), {"pin": person["pin"], "act": act_id}


def _write_emptied(profile: Profile) -> Hostile:
    """A seeded person's every nullable shared column set to NULL in civil-status."""
    emptied = ["birth_date", "sex", "place_of_birth", "hometown", "ethnicity", "nationality"]
    found = profile.civil.execute(
        sql.SQL("UPDATE person SET ({}) = ROW({}) WHERE pin = %s RETURNING {}").format(
            sql.SQL(", ").join(map(sql.Identifier, emptied)),
            sql.SQL(", ").join(sql.NULL * len(emptied)),
            sql.SQL("pg_current_xact_id()::text"),
        ),
        (CHI,),
    ).fetchone()
    assert found is not None
    row: dict[str, Any] = dict.fromkeys(emptied)
    hostile = Hostile("NULLs everywhere", "civil", "person", row, APPLIED, CHI)
    hostile.txid, hostile.reaches = int(str(found[0])) % 2**32, dict.fromkeys(emptied)
    return hostile


def _write_all(profile: Profile, gen: Generator) -> list[Hostile]:
    rows = [_write(profile, hostile) for hostile in _hostile_rows(gen)]
    rows.append(_write_emptied(profile))
    rows += _write_unknown_columns(profile, gen)
    rows += _write_corrections(profile, gen)
    return rows


# --- outcomes ------------------------------------------------------------------------------


def _references(record: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """What a quarantine record is about: the transaction it came from, the person it names."""
    refs: set[tuple[str, ...]] = set()
    if record.get("txid") is not None and record.get("store"):
        refs.add(("tx", record["store"], str(record["txid"] % 2**32)))
    try:
        payload = json.loads(record["payload"])
    except ValueError:
        return refs  # bytes that did not decode, as hex
    if isinstance(payload, dict) and isinstance(payload.get("person"), str):
        refs.add(("person", payload["person"]))
    return refs


def _reaches(profile: Profile, hostile: Hostile) -> bool:
    """Whether the other store's row of the person holds what ``hostile`` should have
    brought it: a citizen or a civil-status person by PIN, a birth without a PIN in the
    population store's inbox of births."""
    conn, table, key = profile.population, "citizen", "pin"
    reaches = hostile.reaches
    if hostile.store == "population":
        conn, table = profile.civil, "person"
    elif hostile.person.startswith("civil#"):
        table, key = "birth_notification", "civil_person"
        reaches = {c: v for c, v in reaches.items() if c in _NOTIFIED}
    query = sql.SQL("SELECT {} FROM {} WHERE {} = %s").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in reaches),
        sql.Identifier(table),
        sql.Identifier(key),
    )
    found = conn.execute(query, (hostile.person,)).fetchone()
    return found is not None and list(found) == list(reaches.values())


@dataclass
class Outcomes:
    """What became of each hostile row so far, and the quarantine records of this run."""

    profile: Profile
    rows: list[Hostile]
    since_ms: int
    records: list[Mapping[str, Any]] = field(default_factory=list)
    outcome: dict[int, str] = field(default_factory=dict)  # row index -> applied or reason
    detail: dict[int, str] = field(default_factory=dict)  # row index -> the quarantine's detail

    def look(self) -> list[Hostile]:
        """Look again; the rows still without an outcome."""
        run = self.profile
        self.records = [
            q.record
            for q in quarantined(run.settings.kafka, run.registry)
            if q.record["ts_ms"] >= self.since_ms
        ]
        by_ref: dict[tuple[str, ...], Mapping[str, Any]] = {}
        for record in self.records:
            for ref in _references(record):
                by_ref.setdefault(ref, record)
        for n, hostile in enumerate(self.rows):
            if n in self.outcome:
                continue
            refs = [("tx", hostile.store, str(hostile.txid)), ("person", hostile.person)]
            found = next((by_ref[r] for r in refs if r in by_ref), None)
            if found is not None:
                self.outcome[n], self.detail[n] = found["reason"], found["detail"]
            elif hostile.expected == APPLIED and _reaches(run, hostile):
                self.outcome[n] = APPLIED
        return [h for n, h in enumerate(self.rows) if n not in self.outcome]


def _brief(row: dict[str, Any]) -> dict[str, str]:
    """``row`` for a failure message: each value's start."""
    return {column: repr(value)[:40] for column, value in row.items()}


def _engine_alive(profile: Profile) -> None:
    """Fail at once, with the parts' last log lines, if a part exited or was restarted."""
    engine = profile.engine
    if engine.restarts or engine.exited():
        tails = {log.name: log.read_text()[-3000:] for log in _logs(profile)}
        pytest.fail(f"restarts {dict(engine.restarts)}, exited {engine.exited()}: {tails}")


def _logs(profile: Profile) -> list[Path]:
    log_dir = profile.engine.log_dir
    assert log_dir is not None
    return sorted(log_dir.glob("*.log"))


def _wait(profile: Profile, what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _SETTLE_S
    while not check():
        _engine_alive(profile)
        assert time.monotonic() < deadline, f"{what}: not within {_SETTLE_S:.0f}s"
        time.sleep(2.0)


def test_hostile_rows_are_applied_or_quarantined_and_the_stream_goes_on(
    profile: Profile,
) -> None:
    run = profile
    gen = Generator(100 + int(run.prefix[-8:], 16) % 900)
    since_ms = time.time_ns() // 1_000_000
    rows = _write_all(run, gen)
    assert len(rows) >= 100

    # Good rows after the hostile ones: new people on both sides, an edit of a seeded one.
    good = [gen.person(), gen.person()]
    for person, (conn, table) in zip(
        good, [(run.civil, "person"), (run.population, "citizen")], strict=True
    ):
        _insert(conn, table, person, "pin")
    run.civil.execute("UPDATE person SET full_name = 'Trần Văn Bính' WHERE pin = %s", (BINH,))

    outcomes = Outcomes(run, rows, since_ms)
    pending: list[Hostile] = rows

    def settled() -> bool:
        nonlocal pending
        pending = outcomes.look()
        return not pending

    try:
        _wait(run, "an outcome for every hostile row", settled)
    except AssertionError:
        left = [(h.kind, h.store, h.table, h.expected, _brief(h.row)) for h in pending]
        matched = {n for n, h in enumerate(rows) if n in outcomes.outcome}
        records = [(r["reason"], r["detail"][:200]) for r in outcomes.records]
        raise AssertionError(
            f"{len(pending)} rows without an outcome: {left}; {len(matched)} with one;"
            f" quarantined since the start: {records}"
        ) from None
    civil_pin = "SELECT count(*) FROM person WHERE pin = %s"
    citizen = "SELECT count(*) FROM citizen WHERE pin = %s"
    _wait(
        run,
        "the good rows written after the hostile ones",
        lambda: (
            run.one(run.population, citizen, good[0]["pin"]) == 1
            and run.one(run.civil, civil_pin, good[1]["pin"]) == 1
            and run.one(run.population, "SELECT full_name FROM citizen WHERE pin = %s", BINH)
            == "Trần Văn Bính"
        ),
    )
    _engine_alive(run)

    unexpected = [
        (h.kind, h.store, h.table, h.expected, outcomes.outcome[n], outcomes.detail.get(n, ""))
        for n, h in enumerate(rows)
        if outcomes.outcome[n] != h.expected
    ]
    assert not unexpected, f"rows that became something else: {unexpected}"
    for record in outcomes.records:
        assert _REASON.fullmatch(record["reason"]), record["reason"]
        assert record["stage"] in {"capture", "merge", "apply"}
    # Nothing the parts logged names a person of this run by PIN.
    logged = "".join(log.read_text(errors="replace") for log in _logs(run))
    assert logged, "the parts logged nothing: the scan below would prove nothing"
    pins = {h.row["pin"] for h in rows if isinstance(h.row.get("pin"), str)}
    pins = {pin for pin in pins if re.fullmatch(r"[0-9]{12}", pin)}
    assert not [pin for pin in pins if pin in logged]
