"""Per-schema compiled Avro encoders: the bytes of fastavro's ``schemaless_writer``, faster.

fastavro's writer walks the schema for every record, and for every union it validates the
value against each branch before writing it (a change event's ``before`` and ``after`` rows
are unions, so each row is walked twice); ``compile_encoder`` does that walk once per schema
and generates straight-line Python for it: one function per record type, one ``try`` and a
few type tests per field, the pieces of the encoding joined once at the end.

Two rules make the generated code safe without copying fastavro's every corner:

* the compiled code only takes the values whose encoding it knows to be fastavro's: exact
  ``dict`` records, ``list`` arrays, ``str``, ``int`` (not ``bool``) in range, ``float``,
  ``bytes``, ``Decimal``... and raises on anything else, including every value fastavro would
  refuse; every union value is checked as strictly as fastavro's validation of it;
* the encoder ``compile_encoder`` returns falls back to fastavro for a record the compiled
  code raised on, so such a record gets fastavro's bytes, or fastavro's exception.

Unions pick their branch as fastavro does: the first branch the value validates against (a
``bool`` is never an ``int``, ``long``, ``float`` or ``double``; an ``int`` is a ``float`` or a
``double`` when an integer branch does not take it first; ``float`` yields to a later
``double``; of several record branches, the one sharing most field names with the value).

Generated source holds only identifiers and literals computed from the schema: field names
and branch-index bytes through ``repr``; defaults, enum symbols and helpers are passed in
the namespace, never written into the source.
"""

from __future__ import annotations

import array
import builtins
import contextlib
import io
import json
import math
import numbers
import struct
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro.logical_writers import LOGICAL_WRITERS

Encoder = Callable[[Any], bytes]

_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_NO_VALUE = object()  # a field without a default, in fastavro's validation


class _Deopt(Exception):  # noqa: N818 - not an error: "fastavro, take this one"
    """The compiled code does not take this value; fastavro decides."""


class _Unsupported(Exception):  # noqa: N818 - internal signal, never escapes this module
    """The schema uses a construct the compiler does not handle."""


# --- the wire primitives -------------------------------------------------------------------------


def _uvarint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:  # noqa: PLR2004 - seven bits per byte
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


_SMALL = 1 << 14
_U = [_uvarint(n) for n in range(_SMALL)]  # every unsigned varint of one or two bytes
_CONT = [bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(_SMALL)]  # 14 bits, more
_LEN = _U[0::2]  # zig-zag lengths below 8192: the varint of 2n


def _long(value: int) -> bytes:
    """Zig-zag varint of an int in [-2**63, 2**63); OverflowError outside, as fastavro."""
    unsigned = value << 1 if value >= 0 else (~value << 1) | 1
    if unsigned < _SMALL:
        return _U[unsigned]
    if unsigned < 1 << 28:
        return _CONT[unsigned & 0x3FFF] + _U[unsigned >> 14]
    if unsigned < 1 << 42:  # epoch milliseconds: three table look-ups
        return _CONT[unsigned & 0x3FFF] + _CONT[(unsigned >> 14) & 0x3FFF] + _U[unsigned >> 28]
    if unsigned >> 64:
        raise OverflowError(f"{value} does not fit in a long")
    out = _CONT[unsigned & 0x3FFF]
    unsigned >>= 14
    while unsigned >= _SMALL:
        out += _CONT[unsigned & 0x3FFF]
        unsigned >>= 14
    return out + _U[unsigned]


_PREFIXED: dict[bytes, list[bytes]] = {}


def _prefixed_lengths(prefix: bytes) -> list[bytes]:
    """``prefix`` (a union's branch index) and each length below 8192, in one piece."""
    if prefix not in _PREFIXED:
        _PREFIXED[prefix] = [prefix + length for length in _LEN]
    return _PREFIXED[prefix]


def _decimal_bytes(scale: int, precision: int) -> Callable[[Decimal], bytes]:
    """fastavro's ``prepare_bytes_decimal``: the unscaled integer at ``scale``, big-endian
    two's complement, in (magnitude bits + 8) // 8 bytes (one more than Java for -2**(8k-1))."""
    quantum = Decimal((0, (1,), -scale))
    power: int = 10**scale
    limit: int = 10**precision

    def slow(value: Decimal) -> bytes:  # fastavro's code, for any other exponent
        sign, digits, exponent = value.as_tuple()
        if len(digits) > precision:
            raise ValueError("The decimal precision is bigger than allowed by schema")
        delta: int = exponent + scale  # type: ignore[operator]  # NaN, infinities: TypeError
        if delta < 0:
            raise ValueError("Scale provided in schema does not match the decimal")
        unscaled = 0
        for digit in digits:
            unscaled = unscaled * 10 + digit
        unscaled *= int(10**delta)
        size = (unscaled.bit_length() + 8) // 8
        return (-unscaled if sign else unscaled).to_bytes(size, "big", signed=True)

    def encode(value: Decimal) -> bytes:
        if value.same_quantum(quantum):  # the exponent is -scale: the usual case
            numerator, denominator = value.as_integer_ratio()  # denominator divides power
            unscaled = numerator * (power // denominator)
            if -limit < unscaled < limit:
                return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
        return slow(value)

    return encode


_pack_float = struct.Struct("<f").pack


def _float(value: float) -> bytes:
    """A float32 as fastavro's C cast makes it: beyond float32's range, an infinity (an int
    beyond a double's range raises OverflowError, as in fastavro)."""
    try:
        return _pack_float(value)
    except OverflowError:
        return _pack_float(math.copysign(math.inf, float(value)))


def _refuse(value: Any) -> bytes:
    raise _Deopt


def _refuse_check(value: Any) -> bool:
    raise _Deopt


def _fastavro_writes(parsed: Any, record: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parsed, record)
    return out.getvalue()


# --- the compiler --------------------------------------------------------------------------------

Code = tuple[list[str], list[str]]  # lines, then the expressions of the encoding's pieces
Check = Callable[[Any], bool]

_LENGTH_FIRST = ("string", "bytes", "decimal")  # encodings that start with a length


def _avro_type(schema: Any) -> str:
    """The Avro type of a resolved schema (``decimal`` for bytes with the logical type);
    _Unsupported for the constructs not compiled."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    if not isinstance(schema, dict) or not isinstance(schema.get("type"), str):
        raise _Unsupported(f"unrecognised schema {schema!r}")
    avro_type: str = schema["type"]
    logical = schema.get("logicalType")
    if logical and f"{avro_type}-{logical}" in LOGICAL_WRITERS:  # fastavro converts these
        if f"{avro_type}-{logical}" != "bytes-decimal":
            raise _Unsupported(f"logical type {avro_type}-{logical}")
        return "decimal"
    if avro_type not in _PRIMITIVES | {"record", "enum", "fixed", "array", "map"}:
        raise _Unsupported(f"type {avro_type!r}")
    return avro_type


def _raw_type(schema: Any) -> Any:
    """fastavro's ``extract_record_type`` of a union branch as written (a name stays one)."""
    if isinstance(schema, dict):
        return schema["type"]
    return "union" if isinstance(schema, list) else schema


def _indented(lines: list[str], levels: int = 1) -> list[str]:
    return [f"{'    ' * levels}{line}" for line in lines]


class _Compiler:
    """The source of one schema's encoder, and fastavro's validation of its unions' branches
    as closures (for the unions whose branch depends on more than the value's type)."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.namespace: dict[str, Any] = {
            "__builtins__": builtins,
            "_D": _Deopt,
            "_long": _long,
            "_LEN": _LEN,
            "_float": _float,
            "_pack_d": struct.Struct("<d").pack,
            "_Decimal": Decimal,
        }
        self.functions: list[str] = []
        self.records: dict[tuple[str, bool], str] = {}
        self.tables: dict[bytes, str] = {b"": "_LEN"}
        self.checks: dict[str, Check] = {}
        self.counter = 0

    def build(self, schema: Any) -> Encoder:
        resolved = self.resolve(schema)
        if _avro_type(resolved) == "record":
            top = self.record(resolved, validated=False)
        else:
            top = "_top"
            lines, pieces = self.code(schema, "v", validated=False)
            self.functions.append(_function(top, "v", lines, pieces))
        source = "\n\n".join(self.functions) + "\n"
        exec(compile(source, "<avro encoder>", "exec"), self.namespace)  # noqa: S102 - no data in it
        encoder: Encoder = self.namespace[top]
        return encoder

    # --- names, constants, named types

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        """A name in the generated code's namespace for ``value``: data never enters the source."""
        name = self.fresh("_k")
        self.namespace[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            if schema not in self.named:
                raise _Unsupported(f"unknown named type {schema!r}")
            return self.named[schema]
        return schema

    # --- encoding code: lines that raise on what they do not take, and the pieces' expressions

    def code(self, schema: Any, value: str, validated: bool, prefix: bytes = b"") -> Code:
        """The code encoding ``value`` (a local name) as ``schema``, after ``prefix`` (a union
        branch's index). ``validated``: inside a union, where fastavro validates first."""
        schema = self.resolve(schema)
        avro_type = _avro_type(schema)
        if prefix and avro_type not in _LENGTH_FIRST:
            lines, pieces = self.code(schema, value, validated)
            return lines, [repr(prefix), *pieces]
        if avro_type == "union":
            return self.union(schema, value)
        if avro_type == "record":
            return [], [f"{self.record(schema, validated)}({value})"]
        if avro_type in ("array", "map"):
            return [], [f"{self.container(schema, validated)}({value})"]
        method: Callable[[Any, str, bytes], Code] = getattr(self, f"code_{avro_type}")
        return method(schema, value, prefix)

    def code_null(self, schema: Any, value: str, prefix: bytes) -> Code:
        return [f"if {value} is not None: raise _D"], []

    def code_boolean(self, schema: Any, value: str, prefix: bytes) -> Code:
        return [f"if {value} is not True and {value} is not False: raise _D"], [
            f"(b'\\x01' if {value} else b'\\x00')"
        ]

    def code_int(self, schema: Any, value: str, prefix: bytes) -> Code:
        check = f"{value}.__class__ is not int or not {_INT_MIN} <= {value} <= {_INT_MAX}"
        return [f"if {check}: raise _D"], [f"_long({value})"]

    def code_long(self, schema: Any, value: str, prefix: bytes) -> Code:
        # _long raises OverflowError beyond 64 bits
        return [f"if {value}.__class__ is not int: raise _D"], [f"_long({value})"]

    def code_float(self, schema: Any, value: str, prefix: bytes) -> Code:
        check = f"{value}.__class__ is not float and {value}.__class__ is not int"
        return [f"if {check}: raise _D"], [f"_float({value})"]

    def code_double(self, schema: Any, value: str, prefix: bytes) -> Code:
        check = f"{value}.__class__ is not float and {value}.__class__ is not int"
        return [f"if {check}: raise _D"], [f"_pack_d({value})"]

    def code_string(self, schema: Any, value: str, prefix: bytes) -> Code:
        data, size = self.fresh("q"), self.fresh("n")
        return [
            f"if {value}.__class__ is not str and not isinstance({value}, str): raise _D",
            f"{data} = {value}.encode()",
            f"{size} = len({data})",
        ], [self.length(prefix, size), data]

    def code_bytes(self, schema: Any, value: str, prefix: bytes) -> Code:
        data, size = self.fresh("q"), self.fresh("n")
        cls = f"{value}.__class__"
        lines = [f"if {cls} is bytes or {cls} is bytearray: {data} = {value}"]
        if _avro_type(schema) == "decimal":
            encode = self.constant(self.decimal(schema))
            lines.append(f"elif {cls} is _Decimal: {data} = {encode}({value})")
        lines += ["else: raise _D", f"{size} = len({data})"]
        return lines, [self.length(prefix, size), data]

    code_decimal = code_bytes

    def code_fixed(self, schema: Any, value: str, prefix: bytes) -> Code:
        cls, size = f"{value}.__class__", schema["size"]
        if not isinstance(size, int) or isinstance(size, bool):
            raise _Unsupported(f"fixed size {size!r}")
        check = f"not ({cls} is bytes or {cls} is bytearray) or len({value}) != {size}"
        return [f"if {check}: raise _D"], [value]

    def code_enum(self, schema: Any, value: str, prefix: bytes) -> Code:
        indexes = {s: _long(i) for i, s in reversed(list(enumerate(schema["symbols"])))}
        return [f"if {value}.__class__ is not str: raise _D"], [
            f"{self.constant(indexes)}[{value}]"
        ]

    def length(self, prefix: bytes, size: str) -> str:
        """``prefix`` and the zig-zag length ``size``: one look-up below 8192."""
        if prefix not in self.tables:
            self.tables[prefix] = self.constant(_prefixed_lengths(prefix))
        long = f"{prefix!r} + _long({size})" if prefix else f"_long({size})"
        return f"({self.tables[prefix]}[{size}] if {size} < 8192 else {long})"

    def decimal(self, schema: Mapping[str, Any]) -> Callable[[Decimal], bytes]:
        scale, precision = schema.get("scale", 0), schema.get("precision")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (scale, precision)):
            return _refuse  # fastavro raises, or reads a bool as a number: it decides
        if precision < 1 or scale < 0:  # type: ignore[operator]  # both ints, checked above
            return _refuse
        return _decimal_bytes(scale, precision)  # type: ignore[arg-type]

    def record(self, schema: Mapping[str, Any], validated: bool) -> str:
        """The function encoding a record: one per record type and context (a union's
        branches are validated by fastavro, which also compares a ``-type`` key)."""
        key = (str(schema["name"]), validated)
        if key in self.records:
            return self.records[key]
        function = self.records[key] = self.fresh("_r")
        lines = ["if d.__class__ is not dict: raise _D"]
        if validated:
            lines.append("if '-type' in d: raise _D")
        pieces: list[str] = []
        for field in schema["fields"]:
            if not isinstance(field["name"], str):
                raise _Unsupported(f"field name {field['name']!r}")
            value = self.fresh("v")
            lines += ["try:", f"    {value} = d[{field['name']!r}]", "except KeyError:"]
            lines.append(f"    {self.absent(field, value)}")
            field_lines, field_pieces = self.code(field["type"], value, validated)
            lines += field_lines
            pieces += field_pieces
        self.functions.append(_function(function, "d", lines, pieces))
        return function

    def absent(self, field: Mapping[str, Any], value: str) -> str:
        """What fastavro writes for a field missing from the record: its default, else null
        if the type contains "null" (fastavro's very test, a substring one on a name), else
        it raises."""
        field_type = field["type"]
        if "default" not in field:
            return f"{value} = None" if "null" in field_type else "raise _D"
        default = field["default"]
        if default is None:
            return f"{value} = None"
        if field_type in ("float", "double"):  # fastavro writes float(value) for these
            with contextlib.suppress(TypeError, ValueError):
                default = float(default)
        return f"{value} = {self.constant(default)}"

    def container(self, schema: Mapping[str, Any], validated: bool) -> str:
        """The function encoding an array or a map: one block, then the empty block."""
        function = self.fresh("_a")
        if schema["type"] == "array":
            item_lines, item_pieces = self.code(schema["items"], "x", validated)
            lines = ["if v.__class__ is not list: raise _D", "if not v: return b'\\x00'"]
            lines += ["o = [_long(len(v))]", "for x in v:"]
        else:
            item_lines, item_pieces = self.code(schema["values"], "x", validated)
            lines = ["if v.__class__ is not dict: raise _D", "if not v: return b'\\x00'"]
            lines += ["o = [_long(len(v))]", "for k, x in v.items():"]
            item_lines = [
                "if k.__class__ is not str: raise _D",
                "kq = k.encode()",
                "kn = len(kq)",
                f"o += ({self.length(b'', 'kn')}, kq)",
                *item_lines,
            ]
        if item_pieces:
            item_lines.append(f"o += ({', '.join(item_pieces)},)")
        lines += _indented(item_lines)
        lines += ["o.append(b'\\x00')", "return b''.join(o)"]
        self.functions.append("\n".join([f"def {function}(v):", *_indented(lines)]))
        return function

    # --- unions

    def union(self, branches: list[Any], value: str) -> Code:
        """Type tests on ``value``, each leading to the branch fastavro picks for values of
        that type, or to fastavro's selection where the value itself decides."""
        types = [_avro_type(self.resolve(branch)) for branch in branches]
        if "union" in types:
            raise _Unsupported("a union directly inside a union")
        codes = [
            self.code(branch, value, validated=True, prefix=_long(position))
            for position, branch in enumerate(branches)
        ]
        slots = [self.fresh("u") for _ in range(max(len(pieces) for _, pieces in codes))]

        def take(position: int) -> list[str]:
            lines, pieces = codes[position]
            return [
                *(lines if types[position] != "null" else []),  # None: tested already
                *(f"{slot} = {piece}" for slot, piece in zip(slots, pieces, strict=False)),
                *(f"{slot} = b''" for slot in slots[len(pieces) :]),
            ]

        if len(types) == len(("null", "T")) and types.count("null") == 1:  # the usual union
            null = types.index("null")
            lines = [f"if {value} is None:", *_indented(take(null))]
            return [*lines, "else:", *_indented(take(1 - null))], slots
        lines = []
        for python_type, test in _ARMS:
            candidates = [i for i, t in enumerate(types) if t in _MAY[python_type]]
            if not candidates:
                continue
            lines.append(f"{'elif' if lines else 'if'} {test.format(v=value)}:")
            chosen = _static_choice(python_type, candidates, types, branches)
            if chosen is not None:
                lines += _indented(take(chosen))
                continue
            lines.append(f"    i = {self.constant(self.selector(branches))}({value})")
            for n, candidate in enumerate(candidates):
                lines.append(f"    {'elif' if n else 'if'} i == {candidate}:")
                lines += _indented(take(candidate), 2)
            lines.append("    else: raise _D")
        return [*lines, "else: raise _D"] if lines else ["raise _D"], slots

    def selector(self, branches: list[Any]) -> Callable[[Any], int]:
        """fastavro's ``write_union`` selection, with its validation of each branch."""
        entries = []
        for i, branch in enumerate(branches):
            resolved = self.resolve(branch)
            kind = _avro_type(resolved)
            fields = frozenset(f["name"] for f in resolved["fields"]) if kind == "record" else None
            entries.append((i, self.check(branch), kind, _raw_type(branch) == "double", fields))

        def select(value: Any) -> int:
            best, most, could_be_float = -1, -1, False
            for i, check, kind, is_double, fields in entries:
                if could_be_float:  # a float branch was valid: only a double may beat it
                    if is_double:
                        return i
                    continue
                if check(value):
                    if kind == "record":  # the record branch sharing most field names
                        shared = len(fields.intersection(set(value)))  # type: ignore[union-attr]
                        if shared > most:
                            best, most = i, shared
                    elif kind == "float":
                        best, could_be_float = i, True
                    else:
                        return i
            if best < 0:
                raise _Deopt  # fastavro raises its ValueError
            return best

        return select

    # --- fastavro's validation (``_validate``, not strict), as closures

    def check(self, schema: Any) -> Check:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            name, checks = schema, self.checks
            if name not in checks:
                checks[name] = _refuse_check  # a recursive reference, until compiled
                checks[name] = self.check(self.resolve(name))

            def named(value: Any) -> bool:
                return checks[name](value)  # the final check, once compiled

            return named
        method: Callable[[Any], Check] = getattr(self, f"check_{_avro_type(schema)}")
        return method(schema)

    def check_null(self, schema: Any) -> Check:
        return lambda value: value is None

    def check_boolean(self, schema: Any) -> Check:
        return lambda value: isinstance(value, bool)

    def check_string(self, schema: Any) -> Check:
        return lambda value: isinstance(value, str)

    def check_bytes(self, schema: Any) -> Check:
        return lambda value: isinstance(value, bytes | bytearray)

    def check_decimal(self, schema: Any) -> Check:
        encode = self.decimal(schema)

        def check(value: Any) -> bool:
            if isinstance(value, Decimal):
                encode(value)  # fastavro converts first, and its errors escape validation
                return True
            return isinstance(value, bytes | bytearray)

        return check

    def check_int(self, schema: Any) -> Check:
        return _integer_check(_INT_MIN, _INT_MAX)

    def check_long(self, schema: Any) -> Check:
        return _integer_check(_LONG_MIN, _LONG_MAX)

    def check_float(self, schema: Any) -> Check:
        return lambda value: (
            isinstance(value, int | float | numbers.Real) and not isinstance(value, bool)
        )

    check_double = check_float

    def check_fixed(self, schema: Any) -> Check:
        size = schema["size"]
        return lambda value: isinstance(value, bytes | bytearray) and len(value) == size

    def check_enum(self, schema: Any) -> Check:
        symbols = schema["symbols"]
        return lambda value: value in symbols

    def check_union(self, schema: Any) -> Check:
        branches = [self.check(branch) for branch in schema]

        def check(value: Any) -> bool:
            if isinstance(value, tuple):
                raise _Deopt  # fastavro's tuple notation names the branch
            return any(branch(value) for branch in branches)

        return check

    def check_array(self, schema: Any) -> Check:
        items = self.check(schema["items"])
        return lambda value: (
            isinstance(value, Sequence | array.array)
            and not isinstance(value, str)
            and all(items(item) for item in value)
        )

    def check_map(self, schema: Any) -> Check:
        values = self.check(schema["values"])
        return lambda value: (
            isinstance(value, Mapping)
            and all(isinstance(key, str) for key in value)
            and all(values(item) for item in value.values())
        )

    def check_record(self, schema: Any) -> Check:
        fields = [
            (f["name"], f.get("default", _NO_VALUE), self.check(f["type"]))
            for f in schema["fields"]
        ]

        def check(value: Any) -> bool:
            if not isinstance(value, Mapping):
                return False
            if "-type" in value:
                raise _Deopt  # fastavro compares it with a name it builds from the field path
            for name, default, field in fields:
                item = value.get(name, default)
                if not field(None if item is _NO_VALUE else item):
                    return False
            return True

        return check


def _integer_check(low: int, high: int) -> Check:
    def check(value: Any) -> bool:
        return (
            isinstance(value, int | numbers.Integral)
            and low <= value <= high  # type: ignore[operator]
            and not isinstance(value, bool)
        )

    return check


def _function(name: str, argument: str, lines: list[str], pieces: list[str]) -> str:
    result = f"b''.join(({', '.join(pieces)},))" if pieces else "b''"
    return "\n".join([f"def {name}({argument}):", *_indented([*lines, f"return {result}"])])


# The Python types the unions' code tests for, exactly (subclasses are fastavro's); for each,
# the Avro types fastavro's validation may take it as, and those that take every value of it.
_ARMS: list[tuple[type, str]] = [
    (type(None), "{v} is None"),
    (str, "{v}.__class__ is str"),
    (int, "{v}.__class__ is int"),
    (bool, "{v}.__class__ is bool"),
    (float, "{v}.__class__ is float"),
    (bytes, "{v}.__class__ is bytes"),
    (bytearray, "{v}.__class__ is bytearray"),
    (Decimal, "{v}.__class__ is _Decimal"),
    (dict, "{v}.__class__ is dict"),
    (list, "{v}.__class__ is list"),
]
_MAY: dict[type, frozenset[str]] = {
    type(None): frozenset(("null",)),
    str: frozenset(("string", "enum")),
    int: frozenset(("int", "long", "float", "double")),
    bool: frozenset(("boolean",)),
    float: frozenset(("float", "double")),
    bytes: frozenset(("bytes", "decimal", "fixed", "array")),  # bytes are a Sequence
    bytearray: frozenset(("bytes", "decimal", "fixed", "array")),
    Decimal: frozenset(("decimal",)),
    dict: frozenset(("record", "map")),
    list: frozenset(("array",)),
}
_ALWAYS = frozenset(
    (
        (type(None), "null"),
        (str, "string"),
        (int, "float"),
        (int, "double"),
        (bool, "boolean"),
        (float, "float"),
        (float, "double"),
        (bytes, "bytes"),
        (bytes, "decimal"),
        (bytearray, "bytes"),
        (bytearray, "decimal"),
        (Decimal, "decimal"),  # converted first: a conversion error is fastavro's error too
    )
)


def _static_choice(
    python_type: type, candidates: list[int], types: list[str], branches: list[Any]
) -> int | None:
    """The branch fastavro picks for every value of ``python_type`` when the schema alone
    decides; None when the value does (several candidates, the first not always valid)."""
    first = candidates[0]
    if (python_type, types[first]) in _ALWAYS:
        if types[first] == "float":  # fastavro prefers any later "double" to a "float"
            doubles = [
                i for i in range(first + 1, len(branches)) if _raw_type(branches[i]) == "double"
            ]
            return doubles[0] if doubles else first
        return first
    if len(candidates) == 1:
        return first  # the branch's code rejects the values its validation would
    return None


def _parsed(schema: Mapping[str, Any] | list[Any] | str) -> tuple[Any, dict[str, Any]]:
    if isinstance(schema, str):
        with contextlib.suppress(json.JSONDecodeError):  # else a bare name: "long"
            schema = json.loads(schema)
    named: dict[str, Any] = {}
    return parse_schema(schema, named), named  # type: ignore[arg-type]


def compile_fast_path(schema: Mapping[str, Any] | list[Any] | str) -> Encoder | None:
    """The compiled code alone, without fastavro behind it: it raises on every value it does
    not take (for tests and diagnostics). None for a schema it cannot compile."""
    parsed, named = _parsed(schema)
    try:
        return _Compiler(named).build(parsed)
    except _Unsupported:
        return None


def compile_encoder(schema: Mapping[str, Any] | list[Any] | str) -> Encoder | None:
    """An encoder of values of ``schema`` (a dict, a list for a union, or its JSON text) to
    Avro binary without the registry header: fastavro's ``schemaless_writer`` bytes, and its
    exceptions for the values it refuses. None if the schema uses a construct not compiled
    (logical types other than decimal on bytes, error types, a union directly in a union):
    keep fastavro for it. A schema fastavro cannot parse raises fastavro's exception."""
    parsed, named = _parsed(schema)
    try:
        fast = _Compiler(named).build(parsed)
    except _Unsupported:
        return None

    def encode(record: Any) -> bytes:
        try:
            return fast(record)
        except Exception:  # any value the compiled code does not take: fastavro's answer
            return _fastavro_writes(parsed, record)

    return encode
