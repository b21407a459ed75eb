"""`civsync demo`, small: it must run end to end on the real services and say what happened,
with no conflict from values that are equal (tone marks, look-alike letters, code lists, less
precise dates), and the re-issued PINs applied as one person each; and it must write no
personal data of the people it seeded to any log, its own or its parts'."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from civsync.config import CivsyncSettings, load_settings
from civsync.generator import GeneratedPerson, Generator
from connectors.kafka.security import ensure_users
from tests.integration.conftest import RUN_DIR

PEOPLE, REGISTRATIONS = 300, 30  # the demo's --people, and its births without a PIN


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo: its own output (console and log lines) and what each part wrote
    to its log (``<run dir>/demo/logs/<part>.log``) during the run."""

    output: str
    logs: dict[str, str]


@pytest.fixture(scope="module")
def demo(settings: object) -> DemoRun:
    """The demo, run once for this module, its own log at DEBUG (its parts log at the level
    the demo gives them). The parts' logs are appended to: only this run's part is kept."""
    log_dir = RUN_DIR / "demo" / "logs"
    before = {log.name: log.stat().st_size for log in log_dir.glob("*.log")}
    done = subprocess.run(
        [sys.executable, "-m", "civsync.cli", "demo", "--people", str(PEOPLE), "--edits", "30"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={
            **os.environ,
            "COLUMNS": "200",
            "CIVSYNC_RUN_DIR": str(RUN_DIR),
            "CIVSYNC_LOG_LEVEL": "DEBUG",
        },
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    logs = {log.name: _written_since(log, before.get(log.name, 0)) for log in log_dir.glob("*.log")}
    return DemoRun(output, logs)


def _written_since(log: Path, offset: int) -> str:
    with log.open("rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace")


def test_the_demo_runs_end_to_end_and_summarises(demo: DemoRun) -> None:
    output = demo.output
    assert "people in both stores" in output
    # every seeded person, and the 30 newborns whose PINs the population store issued
    assert re.search(r"people in both stores\s*│\s*330\s", output)
    assert re.search(r"people in agreement on every shared field\s*│\s*330\s", output)
    assert re.search(r"disagreements left, by field\s*│\s*none\s", output)
    assert re.search(r"births without a PIN: PIN issued and written back\s*│\s*30 of 30", output)
    for line in ("people in agreement on every shared field", "quarantined, by reason"):
        assert line in output
    seeded = re.search(r"equal values seeded in two forms\s*│\s*([^│]*?)\s*│", output)
    assert seeded is not None
    assert "code list" in seeded[1]
    assert "less precise birth date" in seeded[1]
    for cause in (
        "tone marks, look-alike letters or spaces",
        "dates of different precision",
        "one place in two code lists",
    ):
        assert re.search(rf"│ {cause}: 0\s", output), cause
    assert re.search(r"real disagreement / full_name / held: [1-9]", output)  # the live edits
    reissued = re.search(
        r"PINs re-issued: one person under the new PIN\s*│\s*(\d+) of (\d+)", output
    )
    assert reissued is not None
    assert reissued[1] == reissued[2]
    assert re.search(r"capture lag \(bytes of WAL\)\s*│\s*civil: 0, population: 0", output)


def test_the_demos_engine_logs_in_to_kafka_as_its_parts(
    demo: DemoRun, settings: CivsyncSettings
) -> None:
    """The engine reached Kafka over SASL_SSL with a config that holds no login: each part
    logged in as its own user (``part_env``), whose ACLs the demo made for its topics (made
    again here, nothing is missing and nothing is stale)."""
    config = RUN_DIR / "demo" / "civsync.toml"
    assert "sasl_username" not in config.read_text()
    assert "sasl_password" not in config.read_text()
    engine = load_settings(config)
    assert engine.kafka.security_protocol == "SASL_SSL"
    again = ensure_users(settings.kafka, engine.kafka_users, engine.merge)
    assert (again.created, again.deleted) == (0, 0)  # every part's ACLs, for these topics


def _seeded() -> list[GeneratedPerson]:
    """The people the demo seeds and registers, drawn again: the generator is seeded, and
    these are the demo's draws (``Demo.seed``, ``Demo._register``)."""
    people = list(Generator(mismatch=0.05).people(PEOPLE))
    return people + list(Generator(seed=10, legacy=0.0, mismatch=0.0).people(REGISTRATIONS))


def personal_data(people: list[GeneratedPerson]) -> set[str]:
    """What must never appear in a log as it is: each person's PIN (and the one re-issued),
    full name (as either store has it, and in capitals, as the demo's population edits write
    it), parents' names, and full birth date. A year or a year and month alone (legacy
    records) says too little to look for."""
    found: set[str] = set()
    for person in people:
        found |= {person.pin, *([person.reissue.new_pin] if person.reissue else [])}
        for row in (person.civil, person.population):
            names = [row.get(column) for column in ("full_name", "father", "mother")]
            found |= {n for name in names if name for n in (name, name.upper())}
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", row.get("birth_date") or ""):
                found.add(row["birth_date"])
    return found


def leaks(text: str, personal: set[str]) -> list[str]:
    """The pieces of ``personal`` that ``text`` holds unmasked."""
    return sorted(value for value in personal if value in text)


def test_no_log_names_a_seeded_person(demo: DemoRun) -> None:
    """The demo's own output and every part's log, this run's part of it, scanned for each
    seeded person's PIN, names and birth date: the masking of ``civsync.logging`` must leave
    none of them."""
    people = _seeded()
    personal = personal_data(people)
    pin, name = people[0].pin, people[0].civil["full_name"]
    assert {pin, name} <= set(leaks(f"a line with {pin} and {name}", personal))  # it can fail
    assert demo.output.strip(), "the demo wrote nothing: the scan would prove nothing"
    # the parts log at WARNING in the demo: PIN findings of the re-issued PINs, at least
    assert "".join(demo.logs.values()).strip(), "the parts logged nothing: nothing to scan"
    scanned = {"demo output": demo.output, **demo.logs}
    found = {source: leaks(text, personal) for source, text in scanned.items()}
    assert not {source: values for source, values in found.items() if values}
