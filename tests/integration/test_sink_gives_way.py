"""The sink shares its tables with officials' transactions and gives way to them: in a lock
cycle with a user's transaction it is the sink's batch that is rolled back and retried, never
the user's work (real services, a real lock cycle)."""

from __future__ import annotations

from pathlib import Path

from civsync.config import CivsyncSettings
from connectors.postgres import Connection, connect
from tests.integration.capture_support import q
from tests.integration.merge_support import pipeline, wait_for

PIN_FIRST, PIN_SECOND = "079195000001", "079195000002"  # the sink locks rows in key order


def _sink_waits_for_a_lock(population: Connection) -> bool:
    row = population.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'civsync'"
        " AND wait_event_type = 'Lock' AND datname = current_database()"
    ).fetchone()
    return bool(row and row[0])


def test_in_a_lock_cycle_the_sinks_batch_gives_way_not_the_users_transaction(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
) -> None:
    with pipeline(civil, population, tmp_path, unique_name) as run:
        for pin in (PIN_FIRST, PIN_SECOND):
            civil.execute(
                q("INSERT INTO {t} (pin, full_name) VALUES (%s, %s)", run.civil_table),
                (pin, f"Đỗ Văn {pin[-1]}"),
            )
        wait_for(lambda: len(run.rows("population")) == 2, "both people reach population")
        table = run.population_table
        with connect(settings.population) as user:  # an official's transaction
            user.execute(q("SELECT 1 FROM {t} WHERE pin = %s FOR UPDATE", table), (PIN_SECOND,))
            # civil-status renames both in one transaction: one batch for the population sink,
            # which locks the first row, then waits for the second, which the official holds
            civil.execute(q("UPDATE {t} SET full_name = full_name || ' (sửa)'", run.civil_table))
            wait_for(lambda: _sink_waits_for_a_lock(population), "the sink waits for the row")
            # the official now wants the first row: a lock cycle. The sink's lock timeout
            # (500 ms) is shorter than deadlock_timeout (1 s): the sink's batch gives way
            religion = q("UPDATE {t} SET religion = 'Phật giáo' WHERE pin = %s", table)
            user.execute(religion, (PIN_FIRST,))
            user.commit()  # raises DeadlockDetected if the user's transaction had been chosen
        wait_for(
            lambda: all(r["full_name"].endswith("(sửa)") for r in run.rows("population").values()),
            "the sink's retried batch applies the renames",
        )
        row = population.execute(
            q("SELECT religion FROM {t} WHERE pin = %s", table), (PIN_FIRST,)
        ).fetchone()
        assert row == ("Phật giáo",)  # the official's write stands
        run.check_alive()
