"""The merge step: every decision the merger takes about one input, with no Kafka in sight.

An input is a captured change (``Change``) or a ``PersonEdit`` (a steward's decision, or an
edit another merger re-keyed here). The step maps a change to edits, checks PINs, merges
each edit into its person, follows identity links and forwards edits of people who moved.
It reads and writes people through a small port, ``People``, for the people this process
owns; what it cannot do itself it returns in ``Effects``: conflict records to publish,
findings to quarantine, and edits of people another merger owns (the shell re-keys them).

``publication`` says what ``civsync.person`` gets for a person whose merged view changed:
the record, a tombstone (the person moved to a new key), nothing yet (an act waiting for
its person's row), or a finding (a person still missing a field its kind of key requires).

The Kafka shell (``connectors.merge.merger``) decodes, calls the step, and writes its
effects in one transaction; tests drive the step with an in-memory ``People``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Literal, Protocol

from engine.events import Change
from engine.mapping import PersonEdit, PersonMapper, UnusableChange, is_provisional
from engine.merge import Conflict
from engine.person import MergedPerson, link, merge
from engine.pin import Severity, check_pin
from engine.policy import FieldPolicy

KeyKind = Literal["pin", "provisional"]


class People(Protocol):
    """The people this process owns (their partition is assigned to it)."""

    def owns(self, person: str) -> bool:
        """Whether ``person``'s partition is this process's."""

    def get(self, person: str) -> MergedPerson | None:
        """The person's state, None if nothing is known of it yet."""

    def put(self, merged: MergedPerson, *, changed: bool) -> None:
        """Keep ``merged``; ``changed``: its merged view changed (a version to publish)."""


@dataclass(frozen=True)
class Finding:
    """Input the merger cannot use, for the quarantine: a machine-readable reason, a detail
    that names no person, and what was refused (the change, an edit or a person)."""

    reason: str
    detail: str
    refused: Change | PersonEdit | MergedPerson | bytes  # bytes: input that did not decode


@dataclass
class Effects:
    """What the step leaves for the shell to write, over one batch of inputs."""

    conflicts: list[Conflict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    elsewhere: list[PersonEdit] = field(default_factory=list)  # people another merger owns
    warnings: list[Finding] = field(default_factory=list)  # PIN findings: logged, counted
    merged: Counter[str] = field(default_factory=Counter)  # edits merged, by origin
    causes: dict[str, list[PersonEdit]] = field(default_factory=dict)  # person -> its edits merged
    links: int = 0


class Publish(Enum):
    RECORD = "record"
    TOMBSTONE = "tombstone"
    WAIT = "wait"  # an act alone: its person's row may yet link it to a PIN


@dataclass(frozen=True)
class MergeStep:
    """The merger's decisions under one profile: table mappings, field policies, the fields
    each kind of key requires before it is published, the pre-2025 province codes."""

    mapper: PersonMapper
    policies: Mapping[str, FieldPolicy]
    required: Mapping[KeyKind, tuple[str, ...]]
    provinces: frozenset[str]

    def change(self, change: Change, people: People, effects: Effects) -> None:
        """Merge the edits ``change`` makes; an unusable change is a finding."""
        try:
            edits = self.mapper.edits_of(change)
        except UnusableChange as exc:
            effects.findings.append(Finding(exc.reason, exc.detail, change))
            return
        for edit in edits:
            if self._pin_usable(edit, change, effects):
                self.edit(edit, people, effects)

    def edit(self, edit: PersonEdit, people: People, effects: Effects) -> None:
        """Merge ``edit`` into its person if this process owns it, else leave it for the
        shell to send to the owner."""
        if not people.owns(edit.person):
            effects.elsewhere.append(edit)
            return
        unknown = sorted(set(edit.touched) - set(self.policies))
        if unknown:
            detail = f"fields without a policy: {unknown}"
            effects.findings.append(Finding("merge.unknown_field", detail, edit))
            return
        person = people.get(edit.person) or MergedPerson.new(edit.person)
        if person.successor is not None:  # the person moved: so does the edit
            if edit.link_to == person.successor:
                return  # the same link again (a store records a re-issue twice): done
            self.edit(replace(edit, person=person.successor), people, effects)
        elif edit.link_to is not None:
            self._link(person, edit, people, effects)
        else:
            result = merge(person, edit, self.policies)
            effects.conflicts += result.conflicts
            if result.person is not person:
                people.put(result.person, changed=result.changed)
                effects.causes.setdefault(edit.person, []).append(edit)
            effects.merged[edit.origin] += 1

    def publication(self, merged: MergedPerson) -> Publish | Finding:
        """What ``civsync.person`` gets for ``merged``, whose view changed."""
        person = merged.state.person
        if merged.successor is not None:
            return Publish.TOMBSTONE
        kind: KeyKind = "provisional" if is_provisional(person) else "pin"
        view = merged.view(self.policies)
        missing = [
            name
            for name in self.required.get(kind, ())
            if name not in view or view[name].value is None
        ]
        if not missing:
            return Publish.RECORD
        if kind == "pin" or merged.has_row:
            detail = f"a {kind}-keyed person needs {', '.join(missing)}: not published until set"
            return Finding("merge.incomplete", detail, merged)
        return Publish.WAIT

    def _pin_usable(self, edit: PersonEdit, change: Change, effects: Effects) -> bool:
        """Check the person's PIN, and the PIN a link moves it to (docs/design.md, Identity): a
        malformed one is a finding, any other is a warning and the edit flows. A provisional
        key (a birth awaiting its PIN) has no PIN to check."""
        fields = edit.fields
        birth_date, sex = fields.get("birth_date"), fields.get("sex")
        for pin in (edit.person, edit.link_to):
            if pin is None or is_provisional(pin):
                continue
            for finding in check_pin(
                pin,
                birth_date=birth_date if isinstance(birth_date, str) else None,
                sex=sex if isinstance(sex, str) else None,
                provinces=self.provinces,
            ):
                if finding.severity is Severity.QUARANTINE:
                    effects.findings.append(Finding(finding.code, finding.detail, change))
                    return False
                effects.warnings.append(Finding(finding.code, finding.detail, change))
        return True

    def _link(
        self, person: MergedPerson, edit: PersonEdit, people: People, effects: Effects
    ) -> None:
        """Move ``person`` to the key ``edit`` links it to, with all that is known of it."""
        if edit.link_to == edit.person or edit.link_to in person.former_keys:
            detail = "an identity link back to a key this person was already known by"
            effects.findings.append(Finding("identity.cycle", detail, edit))
            return
        result = link(person, edit)
        if result.person is person:
            return
        people.put(result.person, changed=True)
        effects.causes.setdefault(edit.person, []).append(edit)
        effects.conflicts += result.conflicts
        effects.links += 1
        for forwarded in result.forwarded:
            self.edit(forwarded, people, effects)
