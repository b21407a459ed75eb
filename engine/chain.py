"""The hash chain of a person's history: how a step is sealed, and how a chain is checked.

Each step of a person's history (``schemas/person_version.avsc``) carries ``prev_hash``,
the hash of the step before it under the same key ("" for the first), and ``hash``: the
SHA-256, in lowercase hex, of the step's canonical encoding. The canonical encoding is the
record without its ``hash`` field as JSON: keys sorted, no whitespace (``,`` and ``:``),
non-ASCII characters as themselves in UTF-8, numbers as Python writes them (integers as
digits, doubles in their shortest round-tripping form; NaN and infinities as ``NaN``,
``Infinity``, ``-Infinity``). Anyone can
recompute it from the record as decoded from Avro, in any language.

Altering a step breaks its own hash; removing, inserting or reordering steps breaks the
``prev_hash`` of the step after; so the first step where either fails is where the history
was tampered with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = ""  # the prev_hash of a key's first step


def canonical(record: Mapping[str, Any]) -> bytes:
    """The canonical encoding of ``record`` without its ``hash`` field."""
    content = {name: value for name, value in record.items() if name != "hash"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def seal(record: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """``record`` chained after the step hashed ``prev_hash``: its ``prev_hash`` and
    ``hash`` set (in place, and returned)."""
    record["prev_hash"] = prev_hash
    record["hash"] = hashlib.sha256(canonical(record)).hexdigest()
    return record


@dataclass(frozen=True)
class Break:
    """The first step of a chain that does not hold, and why."""

    person: str
    version: int
    where: str  # where the step was read (topic, partition, offset)
    reason: str


@dataclass(frozen=True)
class _Step:
    hash: str
    version: int
    where: str


class ChainChecker:
    """Checks the steps of many people's chains, read in order (each key's steps in the
    order written: one partition of the history topic, from its beginning).

    A chain that holds can still have been extended by someone who recomputed the hashes.
    So it is anchored: ``heads`` gives, for each key, the hash of the last step the merger
    wrote (its state records it, in the same transaction as the step). Steps after the
    anchor were either written since the heads were read, or forged; ``beyond_heads``
    names the first step still beyond the heads once they have been read again.
    """

    def __init__(self, heads: Mapping[str, str]) -> None:
        self._heads = heads
        self._last: dict[str, str] = {}  # key -> hash of its last step checked
        self._beyond: dict[str, list[_Step]] = {}  # key -> steps after its anchor
        self.steps = 0

    @property
    def people(self) -> int:
        return len(self._last)

    def check(self, record: Mapping[str, Any], where: str) -> Break | None:
        """The break ``record`` makes in its key's chain, None if it holds so far."""
        person, version, sealed = record["person"], record["version"], record["hash"]
        self.steps += 1
        expected = self._last.get(person, GENESIS)
        self._last[person] = sealed
        computed = hashlib.sha256(canonical(record)).hexdigest()
        if computed != sealed:
            reason = f"its content does not match its hash (recomputed {computed[:16]}...)"
            return Break(person, version, where, reason)
        if record["prev_hash"] != expected:
            before = f"that of the step before ({expected[:16]}...)" if expected else "none"
            reason = f"its prev_hash {record['prev_hash'][:16] or '(none)'}... is not {before}"
            return Break(person, version, where, reason)
        if sealed == self._heads.get(person):
            self._beyond.pop(person, None)
        elif person in self._heads:
            self._beyond.setdefault(person, []).append(_Step(sealed, version, where))
        return None

    def unanchored(self) -> set[str]:
        """Keys with steps after their anchor, or whose anchor was not among their steps."""
        missing = {p for p, head in self._heads.items() if head and p not in self._last}
        return set(self._beyond) | missing

    def beyond_heads(self, heads: Mapping[str, str]) -> Break | None:
        """The first step beyond ``heads`` (read again, after the steps were read): no
        merger wrote it. Or an anchor the history lacks: steps were removed."""
        for person in sorted(self.unanchored()):
            head = heads.get(person, self._heads.get(person, GENESIS))
            if head == self._last.get(person):
                continue
            steps = self._beyond.get(person, [])
            known = [n for n, step in enumerate(steps) if step.hash == head]
            first = known[-1] + 1 if known else 0
            if first < len(steps):
                step = steps[first]
                reason = "no merger wrote it: it follows the last step the merger's state records"
                return Break(person, step.version, step.where, reason)
            reason = f"the history lacks the step the merger's state ends at ({head[:16]}...)"
            return Break(person, -1, "the end of its history", reason)
        return None
