"""Hostile input for the pure parts: whatever they are given, they answer or refuse with
their documented error, never with anything else (which would stop the part that calls them).

- ``engine.pin.check_pin``: findings only (``pin.malformed`` for anything but 12 ASCII digits);
- ``engine.dates``: ``parse`` gives a calendar date or None; the comparisons give booleans;
- ``engine.places``: ``comparison_key`` and ``for_steward`` read any text; ``PlaceMap.derive``
  refuses a code with ``UnknownPlaceCode`` only;
- ``engine.mapping.PersonMapper.edits_of``: edits, or ``UnusableChange``, for rows of every
  mapped table of the profile with any values, extra columns, any op and images;
- ``engine.step.MergeStep``: findings, never an exception, over changes of a few people from
  both stores; the state, history and person records it leaves encode with their schemas;
- ``connectors.capture.pgoutput.PgOutputDecoder``: events, or the errors capture quarantines as
  ``capture.malformed_change`` (``stream._Follow._decode``), for random and half-formed messages;
- ``connectors.capture.reader``: an envelope its schema allows but that is no civsync change
  (another producer's op, snapshot marker or missing clock) is a ``DecodingError``, which the
  merger quarantines as ``merge.undecodable``.

The one known exception is a place nested deeper than Python's recursion limit
(``test_a_place_nested_deeper_than_the_recursion_limit_is_read_as_text``): PostgreSQL's
``jsonb`` takes thousands of levels, ``json.loads`` raises ``RecursionError`` at about 1,000.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors.capture.avro_types import codec
from connectors.capture.envelope import Column, envelope_schema
from connectors.capture.pgoutput import (
    MalformedChangeError,
    PgOutputDecoder,
    TableInfo,
    value_of,
)
from connectors.capture.reader import ChangeEventReader
from connectors.kafka.avro import DecodingError
from connectors.merge.records import (
    MergeTopics,
    conflict_to_avro,
    history_step,
    merged_values,
    person_to_avro,
    state_to_avro,
)
from connectors.place_data import place_map, pre_2025_province_codes
from engine import dates
from engine.events import Change, Hlc, Op, Source, Value
from engine.mapping import TableMapping, UnusableChange
from engine.pin import Severity, check_pin
from engine.places import (
    PLACE_FIELDS,
    CodeList,
    Place,
    UnknownPlaceCode,
    comparison_key,
    for_steward,
)
from engine.step import Effects
from tests.unit.test_merge_step import PROFILE, STEP, People

PLACES = place_map()
FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
_REASON = re.compile(r"[a-z]+\.[a-z_]+")  # a machine-readable quarantine code

# --- hostile values ----------------------------------------------------------------------------

_CONTROL = st.characters(min_codepoint=1, max_codepoint=0x1F) | st.sampled_from(
    ["\x7f", "\u2028", "\u202e", "\ufeff", "\u200d", "\u0301", "\U0001f600", "Ð", "\u00a0"]
)
HOSTILE_TEXT = st.one_of(
    st.text(),
    st.text(_CONTROL, min_size=1),
    st.from_regex(r"[0-9]{12}\n?", fullmatch=True),  # a PIN, maybe with a trailing newline
    st.from_regex(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?", fullmatch=True),  # date-shaped
    st.integers(1, 400_000).map(lambda n: "Nguyễn " * (n // 7)),  # up to about 400 KB
    st.sampled_from(["", " ", "unknown", "null", "NaN", "'); DROP TABLE person; --", "{0}%s"]),
)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)
_CODES = st.sampled_from(sorted(PLACES.pre_2025)[:50] + sorted(PLACES.current)[:50])
PLACE_DOCUMENT = st.fixed_dictionaries(
    {"text": JSON},
    optional={
        "code": _CODES | JSON,
        "code_list": st.sampled_from(["pre-2025", "2025", "1999", ""]) | JSON,
        "quality": st.sampled_from(["split-default", "resolved", "ambiguous"]) | JSON,
        "current": st.fixed_dictionaries({}, optional={"ward_code": _CODES | JSON}) | JSON,
    },
)
PLACE_TEXT = st.one_of(
    PLACE_DOCUMENT.map(lambda d: json.dumps(d, ensure_ascii=False)),
    JSON.map(json.dumps),
    st.integers(1, 50_000).map(lambda n: json.dumps({"text": "x", "codes": [0] * n})),
    st.integers(1, 900).map(lambda n: '{"text": "x", "a": ' + "[" * n + "]" * n + "}"),
    HOSTILE_TEXT,
)
VALUE: st.SearchStrategy[Value] = st.one_of(
    st.none(), HOSTILE_TEXT, PLACE_TEXT, st.booleans(), st.integers(), st.floats()
)
_PEOPLE = st.sampled_from(["001090000101", "001192000103", "079203001234", "001095000905"])
PINS = _PEOPLE | st.one_of(  # half of them one of a few people, so that edits meet
    st.from_regex(r"[0-9]{1,13}\n?", fullmatch=True),
    st.sampled_from(
        ["", " 001090000101", "00109000010A", "\uff10\uff10\uff11" + "\uff10" * 9, "civil#7"]
    ),
    st.none(),
    st.integers(),
)


# --- PINs and dates ----------------------------------------------------------------------------


@FUZZ
@given(HOSTILE_TEXT, st.none() | HOSTILE_TEXT, st.none() | HOSTILE_TEXT)
def test_a_pin_check_only_ever_finds(pin: str, birth_date: str | None, sex: str | None) -> None:
    findings = check_pin(pin, birth_date=birth_date, sex=sex, provinces=pre_2025_province_codes())
    well_formed = re.fullmatch(r"[0-9]{12}", pin, flags=re.ASCII) is not None
    refused = [f.code for f in findings if f.severity is Severity.QUARANTINE]
    assert refused == ([] if well_formed else ["pin.malformed"])
    assert all(pin not in f.detail for f in findings if len(pin) >= 4)  # findings are logged


@FUZZ
@given(HOSTILE_TEXT)
def test_a_date_is_a_calendar_date_or_none(text: str) -> None:
    parsed = dates.parse(text)
    if parsed is not None:
        written = "-".join(
            f"{part:0{width}d}"
            for part, width in zip(parsed, (4, 2, 2), strict=True)
            if part is not None
        )
        assert written == text
    assert dates.precision(text) == (0 if parsed is None else parsed.precision)


@FUZZ
@given(VALUE, VALUE)
def test_date_comparisons_take_any_value(a: Value, b: Value) -> None:
    assert isinstance(dates.compatible(a, b), bool)
    assert isinstance(dates.refines(a, b), bool)


# --- places ------------------------------------------------------------------------------------


@FUZZ
@given(PLACE_TEXT)
def test_any_place_text_is_compared_and_looked_at(text: str) -> None:
    key = comparison_key(text)
    assert key[0] in {"unit", "recorded", "text"}
    assert isinstance(for_steward(text), bool)


@FUZZ
@given(
    st.none() | st.text(),
    st.sampled_from(list(CodeList)),
    st.none() | _CODES | st.text(),
    st.none() | _CODES | st.text(),
)
def test_deriving_a_place_refuses_only_an_unknown_code(
    text: str | None, code_list: CodeList, ward: str | None, district: str | None
) -> None:
    try:
        derived = PLACES.derive(Place(text, code_list, ward_code=ward, district_code=district))
    except UnknownPlaceCode:
        return
    assert derived.text == text  # the recorded part is never changed


@pytest.mark.parametrize("reader", [comparison_key, for_steward])
def test_a_place_nested_deeper_than_the_recursion_limit_is_read_as_text(
    reader: Callable[[str], object],
) -> None:
    deep = '{"text": "split-default", "a": ' + "[" * 5_000 + "]" * 5_000 + "}"
    reader(deep)


# --- mapping and the merge step ----------------------------------------------------------------


def _columns(mapping: TableMapping) -> list[str]:
    named = [mapping.person_column, mapping.local_key, mapping.field_column]
    named += [mapping.value_column, mapping.link_column, *mapping.columns.values()]
    return sorted({c for c in named if c is not None})


_DATES = st.dates().map(lambda day: day.isoformat()[: draw_precision(day.day)])


def draw_precision(day: int) -> int:
    """A precision for a drawn date: the year, the month or the day (by its day, any rule)."""
    return (4, 7, 10)[day % 3]


def _values_of(field: str | None) -> st.SearchStrategy[Value]:
    """Values for a column of ``field``: as hostile as any, with some usable ones among them
    for dates and places, so that changes get past the date check and edits meet."""
    if field in dates.DATE_FIELDS:
        return _DATES | VALUE
    if field in PLACE_FIELDS:
        return PLACE_TEXT | st.none()
    return VALUE


@st.composite
def rows(draw: st.DrawFn, mapping: TableMapping) -> dict[str, Value]:
    """A row of ``mapping``'s table: any of its columns, each any value, and unknown ones."""
    row: dict[str, Value] = {}
    fields = {column: name for name, column in mapping.columns.items()}
    for column in _columns(mapping):
        if column != mapping.person_column and draw(st.booleans()):
            continue  # absent: an unchanged TOAST value, or a column dropped since
        if column in (mapping.person_column, mapping.link_column):
            row[column] = draw(PINS)
        elif column == mapping.local_key:
            row[column] = draw(st.none() | st.integers(-(2**63), 2**63 - 1) | HOSTILE_TEXT)
        elif column == mapping.field_column:
            row[column] = draw(st.sampled_from(sorted(PROFILE.policies())) | HOSTILE_TEXT)
        else:
            row[column] = draw(_values_of(fields.get(column)))
    row.update(draw(st.dictionaries(st.text(min_size=1), VALUE, max_size=2)))  # unknown columns
    return row


@st.composite
def changes(draw: st.DrawFn) -> Change:
    """A change of any mapped table of the profile, with hostile rows."""
    person, citizen = PROFILE.person_tables()  # the people's own rows, as often as the rest
    mapping = draw(st.sampled_from([person, citizen]) | st.sampled_from(PROFILE.mappings()))
    schema, table = mapping.table.split(".", 1)
    op = draw(st.sampled_from(list(Op)))
    before = draw(st.none() | rows(mapping))
    after = draw(rows(mapping))
    previous = draw(st.none() | st.fixed_dictionaries({mapping.person_column: PINS}))
    lsn = draw(st.integers(0, 2**63 - 1))
    wall_ms = draw(st.integers(0, 2**62))
    sequence = draw(st.integers(0, 2**31 - 1))
    source = Source(mapping.store, "db", schema, table, lsn, lsn, None, wall_ms)
    event_id = f"{mapping.store}:{lsn:016x}:{sequence}"
    hlc = Hlc(wall_ms, sequence, mapping.store)
    return Change(event_id, op, source, before, after, hlc, previous)


@FUZZ
@given(changes())
def test_mapping_a_change_gives_edits_or_an_unusable_change(change: Change) -> None:
    try:
        edits = STEP.mapper.edits_of(change)
    except UnusableChange as exc:
        reason = exc.reason
    else:
        assert all(edit.event_id == change.event_id for edit in edits)
        return
    assert _REASON.fullmatch(reason)


_TOPICS = MergeTopics("fuzz")
_SCHEMAS = {
    name: parse_schema(json.loads(topic.value_schema))
    for name, topic in (
        ("state", _TOPICS.state),
        ("history", _TOPICS.history),
        ("person", _TOPICS.person),
        ("conflict", _TOPICS.conflicts),
    )
}


def _encodes(name: str, record: dict[str, Any]) -> None:
    schemaless_writer(io.BytesIO(), _SCHEMAS[name], record)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(changes(), min_size=1, max_size=6))
def test_the_merge_step_only_ever_finds_and_its_records_encode(batch: list[Change]) -> None:
    """A batch of hostile changes of a few people: the step merges, leaves findings with
    machine-readable reasons whose details name no PIN, and what the merger writes next (the
    state, the history step and the person record of everyone it changed, the conflicts)
    encodes with the published schemas."""
    people, effects = People(), Effects()
    for n, change in enumerate(batch):  # clocks apart, so that origins displace each other
        STEP.change(replace(change, hlc=replace(change.hlc, logical=n)), people, effects)
    # a detail may name a column (the schema's, not personal data), however it is spelt, and
    # so does a correction's ``field`` (the column it corrects)
    rows = [row for change in batch for row in (change.before, change.after) if row]
    columns = {repr(c) for row in rows for c in row}
    columns |= {repr(row["field"]) for row in rows if isinstance(row.get("field"), str)}
    for finding in effects.findings + effects.warnings:
        assert _REASON.fullmatch(finding.reason)
        detail = finding.detail
        for column in columns:
            detail = detail.replace(column, "")
        assert not re.search(r"(?<![0-9])[0-9]{12}(?![0-9])", detail)
    for conflict in effects.conflicts:
        _encodes("conflict", conflict_to_avro(conflict))
    for person in people.changed:
        merged = people.people[person]
        STEP.publication(merged)
        _encodes("state", state_to_avro(merged))
        step = history_step(
            merged,
            merged_values(merged, STEP.policies),
            published=True,
            causes=effects.causes.get(person, []),
            conflicts=[c for c in effects.conflicts if c.person == person],
            ts_ms=0,
        )
        _encodes("history", step)
        _encodes("person", person_to_avro(merged, step))


# --- capture: pgoutput and the reader ----------------------------------------------------------

# What capture quarantines as capture.malformed_change (connectors.capture.stream._Follow._decode).
CAPTURE_REFUSES = (MalformedChangeError, KeyError, ValueError)
_TYPES = {16: "boolean", 17: "bytea", 20: "bigint", 23: "integer", 25: "text", 700: "real"}
_TYPES |= {701: "double precision", 1082: "date", 1700: "numeric", 3802: "jsonb"}


class AnyCatalog:
    """A catalog that knows every relation (keyed by ``id``, or by nothing) and names any type."""

    def __init__(self, keyed: bool) -> None:
        self.keyed = keyed

    def describe(self, relid: int) -> TableInfo:
        return TableInfo(("id",) if self.keyed else (), {})

    def type_name(self, oid: int, typmod: int) -> str:
        return _TYPES.get(oid, "text")


def _cstring(text: str) -> bytes:
    return text.encode() + b"\0"


_COLUMN_NAMES = ["id", "pin", "full_name", "birth_date", "x y", "tên", "ghi chú"]


@st.composite
def relation_messages(draw: st.DrawFn, relid: int, columns: int) -> bytes:
    """A Relation message of ``columns`` columns of any names and types."""
    body = struct.pack("!i", relid) + _cstring("public") + _cstring("person") + b"f"
    body += struct.pack("!h", columns)
    for n in range(columns):
        name = "id" if n == 0 else draw(st.sampled_from(_COLUMN_NAMES))
        oid = draw(st.sampled_from(sorted(_TYPES)) | st.integers(0, 2**32 - 1))
        body += struct.pack("!b", int(n == 0)) + _cstring(name)
        body += struct.pack("!Ii", oid, draw(st.integers(-(2**31), 2**31 - 1)))
    return b"R" + body


@st.composite
def tuples(draw: st.DrawFn, columns: int, *, flawed: bool) -> bytes:
    """A row image of ``columns`` columns: text (hostile text, or any bytes), null or an
    unchanged TOAST value; if ``flawed``, maybe a wrong count, length or column kind."""
    count = draw(st.integers(-1, columns + 1)) if flawed else columns
    body = struct.pack("!h", count)
    for _ in range(max(count, 0)):
        kinds = [b"t", b"t", b"n", b"u", *([b"?"] if flawed else [])]
        kind = draw(st.sampled_from(kinds))
        body += kind
        if kind == b"t":
            data = draw(HOSTILE_TEXT.map(str.encode) | st.binary(max_size=20))
            length = draw(st.integers(-5, 100)) if flawed else len(data)
            body += struct.pack("!i", length) + data
    return body


@st.composite
def row_messages(draw: st.DrawFn, relid: int, columns: int) -> bytes:
    """An insert, update or delete of the relation (or another), old and new images."""
    flawed = draw(st.booleans())
    kind = draw(st.sampled_from([b"I", b"U", b"D"]))
    body = struct.pack("!i", draw(st.just(relid) | st.integers(0, 4)) if flawed else relid)
    tags = [[b"N"], [b"O", b"N"], [b"K", b"N"], [b"O"], [b"K"], *([[b"X"]] if flawed else [])]
    for tag in draw(st.sampled_from(tags)):
        body += tag + draw(tuples(columns, flawed=flawed))
    return kind + body


_BEGIN = b"B" + struct.pack("!qqi", 0x1A07310, 848_744_816_944_703, 751)
_COMMIT = b"C" + struct.pack("!bqqq", 0, 0x1A07310, 0x1A07368, 848_744_816_944_703)
GARBAGE = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(list(b"BCORMIUDYTZ")).flatmap(
        lambda kind: st.binary(max_size=40).map(lambda rest: bytes([kind]) + rest)
    ),
)


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """A transaction of changes of one relation, with garbage and truncated messages mixed in."""
    relid, columns = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    messages = [draw(relation_messages(relid, columns)), _BEGIN]
    messages += draw(st.lists(row_messages(relid, columns) | GARBAGE, max_size=8))
    messages.append(_COMMIT)
    cut = draw(st.lists(st.integers(0, len(messages) - 1), max_size=2, unique=True))
    return [m[: draw(st.integers(0, len(m)))] if n in cut else m for n, m in enumerate(messages)]


@FUZZ
@given(st.booleans(), streams())
def test_pgoutput_decoding_gives_events_or_what_capture_quarantines(
    keyed: bool, messages: list[bytes]
) -> None:
    decoder = PgOutputDecoder("civil", "civil", AnyCatalog(keyed), frozenset({"civsync_apply"}))
    for n, payload in enumerate(messages):
        try:
            list(decoder.decode(0x1A07200 + n, payload))
        except CAPTURE_REFUSES:
            continue  # quarantined; the stream goes on with the next message


@FUZZ
@given(st.sampled_from(["json", "jsonb"]), st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=4))
def test_a_json_value_is_published_as_the_same_json(pg_type: str, document: dict[str, str]) -> None:
    """Strings with control characters (escaped: ``\\n``, ``\\u001e``) followed by combining
    marks: NFC would merge an escape's last letter with the mark, and the JSON would break."""
    text = json.dumps(document, ensure_ascii=False)
    assert json.loads(str(value_of(pg_type, text))) == document


_FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


@FUZZ
@example(_FLOAT32_MAX)
@example(-_FLOAT32_MAX)
@given(st.floats(width=32))
def test_every_real_reads_back_as_itself(number: float) -> None:
    """A ``real`` column's every value, through its Avro float and back to the published form
    the merger reads (the shortest decimal that is the same float32): PostgreSQL prints the
    largest one as ``3.4028235e+38``, which rounds past float32 at fewer digits."""
    real = codec("real")
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(real.schema), real.to_avro(number))
    read = schemaless_reader(io.BytesIO(out.getvalue()), parse_schema(real.schema), None)
    published = real.from_avro(read)
    assert isinstance(published, float)
    assert struct.pack("<f", published) == struct.pack("<f", number) or math.isnan(number)


_ENVELOPE = envelope_schema(
    "fuzz.civil.person", [Column("id", "bigint"), Column("pin", "text")], [Column("id", "bigint")]
)


class OneSchemaRegistry:
    """A registry holding the one envelope schema, under id 1."""

    def writer_schema(self, schema_id: int) -> str:
        return json.dumps(_ENVELOPE)


def _envelope(op: str, snapshot: str | None, hlc: dict[str, Any] | None) -> bytes:
    source: dict[str, Any] = {"version": "debezium", "connector": "postgresql", "ts_ms": 0}
    source |= {
        "name": "x",
        "snapshot": snapshot,
        "db": "civil",
        "sequence": None,
        "schema": "public",
    }
    source |= {"table": "person", "txId": None, "lsn": 1, "xmin": None, "store": "civil"}
    record: dict[str, Any] = {
        "before": None,
        "after": {"id": 1, "pin": "001090000101"},
        "source": source,
    }
    record |= {"op": op, "ts_ms": None, "transaction": None, "event_id": "civil:1:0"}
    record |= {"hlc": hlc, "unavailable": [], "previous_key": None}
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, 1))  # the registry's framing: magic byte, schema id 1
    schemaless_writer(out, parse_schema(_ENVELOPE), record)
    return out.getvalue()


_CLOCK = {"wall_ms": 1, "logical": 0, "node": "civil"}


def test_a_civsync_envelope_reads_as_a_change() -> None:
    reader = ChangeEventReader(OneSchemaRegistry())  # type: ignore[arg-type]
    change = reader.read(_envelope("c", "false", _CLOCK), "fuzz[0]@0")
    assert (change.op, change.after, change.hlc) == (
        Op.CREATE,
        {"id": 1, "pin": "001090000101"},
        Hlc(1, 0, "civil"),
    )


@pytest.mark.parametrize(
    ("op", "snapshot", "hlc"),
    [
        ("t", "false", _CLOCK),  # Debezium's truncate
        ("m", "false", _CLOCK),  # Debezium's logical message
        ("c", "true", _CLOCK),  # Debezium's snapshot markers
        ("r", "last", _CLOCK),
        ("c", "false", None),  # no civsync clock: another producer's envelope
    ],
)
def test_an_envelope_its_schema_allows_but_no_civsync_change_is_undecodable(
    op: str, snapshot: str, hlc: dict[str, Any] | None
) -> None:
    """Valid for the topic's schema, so a producer other than civsync's capture may write
    it. The merger quarantines what the reader calls undecodable (``merge.undecodable``);
    any other error would stop it, on every restart, at the same record."""
    reader = ChangeEventReader(OneSchemaRegistry())  # type: ignore[arg-type]
    with pytest.raises(DecodingError, match="fuzz"):
        reader.read(_envelope(op, snapshot, hlc), "fuzz[0]@0")
