"""The civil-status <-> population profile end to end, on migrated stores of its own:
registrations drive the population store, PINs are issued for births and written back, a
re-issued PIN keeps one person, an incomplete birth is quarantined naming the field and
flows once corrected, and a split ward's default successor waits for a steward."""

from __future__ import annotations

from typing import Any

from connectors.merge.records import MergeTopics
from connectors.merge.steward import history
from tests.integration.merge_support import wait_for
from tests.integration.profile_support import ACT, ANH, BINH, CHI, DUNG, EM, EM_REISSUED, Profile


def test_registrations_identity_and_review_flow_between_the_stores(profile: Profile) -> None:
    run, civil, population = profile, profile.civil, profile.population
    # A birth registered without a PIN, and a legacy one without a known sex.
    hoa = run.insert(
        civil,
        "person",
        full_name="Vũ Thị Hoa",
        birth_date="2025-07-01",
        sex="female",
        father="Vũ Văn Nam",
    )
    run.insert(
        civil,
        "birth_registration",
        **ACT,
        number="2",
        person_id=hoa,
        full_name="Vũ Thị Hoa",
        birth_date="2025-07-01",
        sex="female",
    )
    khanh = run.insert(civil, "person", full_name="Đỗ Khánh", birth_date="2025", sex="unknown")
    khanh_birth = run.insert(
        civil,
        "birth_registration",
        **ACT,
        number="3",
        person_id=khanh,
        full_name="Đỗ Khánh",
        birth_date="2025",
        sex="unknown",
    )
    anh_id, binh_id, chi_id, dung_id = (
        run.one(civil, "SELECT id FROM person WHERE pin = %s", pin)
        for pin in (ANH, BINH, CHI, DUNG)
    )
    run.insert(
        civil,
        "marriage_registration",
        **ACT,
        number="4",
        spouse_a_id=binh_id,
        spouse_b_id=chi_id,
        spouse_a_pin=BINH,
        spouse_b_pin=CHI,
        married_on="2025-08-01",
    )
    run.insert(
        civil,
        "death_registration",
        **ACT,
        number="5",
        person_id=dung_id,
        pin=DUNG,
        date_of_death="2025-08",
    )
    anh_birth = run.one(civil, "SELECT id FROM birth_registration WHERE pin = %s", ANH)
    run.insert(
        civil,
        "correction",
        **ACT,
        number="6",
        person_id=anh_id,
        pin=ANH,
        corrects="birth_registration",
        corrected_id=anh_birth,
        field="full_name",
        old_value="Nguyễn Văn Anh",
        new_value="Nguyễn Văn Ánh",
        reason="keying error",
    )
    # The population store re-issues a PIN.
    with population.transaction():
        population.execute(
            "UPDATE citizen SET pin = %s, sex = 'male' WHERE pin = %s", (EM_REISSUED, EM)
        )
        run.insert(
            population,
            "pin_history",
            old_pin=EM,
            new_pin=EM_REISSUED,
            changed_on="2025-09-01",
            reason="sex_redetermination",
        )

    # The birth reaches the population store's inbox; the population store issues the PIN;
    # civsync writes it back to civil-status and keeps one person.
    notification = wait_for(
        lambda: run.one(
            population,
            "SELECT full_name, sex, birth_date FROM birth_notification WHERE civil_person = %s",
            f"civil#{hoa}",
        ),
        "the birth notification",
    )
    assert notification == ("Vũ Thị Hoa", "female", "2025-07-01")
    assert run.one(population, "SELECT issue_pins('001')") == 1
    issued = run.one(
        population, "SELECT pin FROM birth_notification WHERE civil_person = %s", f"civil#{hoa}"
    )
    assert issued.startswith("001325")  # Hà Nội, born 2025, female
    wait_for(
        lambda: run.one(civil, "SELECT pin FROM person WHERE id = %s", hoa) == issued,
        "the issued PIN written back to civil-status",
    )
    wait_for(
        lambda: run.one(population, "SELECT full_name FROM citizen WHERE pin = %s", issued),
        "the citizen created from the birth",
    )
    assert run.one(population, "SELECT count(*) FROM citizen WHERE full_name = 'Vũ Thị Hoa'") == 1
    assert run.one(civil, "SELECT count(*) FROM person WHERE full_name = 'Vũ Thị Hoa'") == 1
    records = wait_for(lambda: run.person_records(issued), "the merged record of the newborn")
    assert records[-1]["former_keys"] == [f"civil#{hoa}"]
    assert records[-1]["values"]["father"] == "Vũ Văn Nam"

    # Marriage, death and correction reach the population store.
    def citizen(pin: str) -> Any:
        return run.one(
            population,
            "SELECT full_name, marital_status, spouse, date_of_death FROM citizen WHERE pin = %s",
            pin,
        )

    wait_for(lambda: citizen(BINH)[1:3] == ("married", CHI), "Bình married to Chi")
    wait_for(lambda: citizen(CHI)[1:3] == ("married", BINH), "Chi married to Bình")
    wait_for(lambda: citizen(DUNG)[3] == "2025-08", "Dũng's date of death")
    wait_for(lambda: citizen(ANH)[0] == "Nguyễn Văn Ánh", "Anh's corrected name")
    person = "SELECT full_name, marital_status, spouse FROM person WHERE pin = %s"
    wait_for(lambda: run.one(civil, person, ANH)[0] == "Nguyễn Văn Ánh", "the act on civil's row")
    wait_for(lambda: run.one(civil, person, CHI)[1:] == ("married", BINH), "civil's Chi married")

    # The re-issued PIN: civil-status's row follows, one person, with the old PIN remembered.
    wait_for(
        lambda: (
            run.one(civil, "SELECT pin FROM person WHERE full_name = 'Hoàng Thị Em'") == EM_REISSUED
        ),
        "civil-status's row renamed to the re-issued PIN",
    )
    assert run.one(civil, "SELECT count(*) FROM person WHERE pin IN (%s, %s)", EM, EM_REISSUED) == 1
    moved = wait_for(lambda: run.person_records(EM_REISSUED), "the re-issued PIN's record")
    wait_for(lambda: EM in run.person_records(EM_REISSUED)[-1]["former_keys"], "EM's former PIN")
    assert moved[-1]["values"]["full_name"] == "Hoàng Thị Em"

    # The legacy birth without a sex is quarantined, naming the field, and flows once corrected.
    incomplete = wait_for(
        lambda: [
            r for r in run.quarantined("merge.incomplete") if f'"civil#{khanh}"' in r["payload"]
        ],
        "the incomplete birth quarantined",
    )
    assert "sex" in incomplete[0]["detail"]
    assert "Đỗ Khánh" not in incomplete[0]["detail"]  # the reason names fields, not people
    assert (
        run.one(
            population,
            "SELECT count(*) FROM birth_notification WHERE civil_person = %s",
            f"civil#{khanh}",
        )
        == 0
    )
    run.insert(
        civil,
        "correction",
        **ACT,
        number="7",
        person_id=khanh,
        corrects="birth_registration",
        corrected_id=khanh_birth,
        field="sex",
        old_value="unknown",
        new_value="male",
        reason="the book's page was found",
    )
    wait_for(
        lambda: (
            run.one(
                population,
                "SELECT sex FROM birth_notification WHERE civil_person = %s",
                f"civil#{khanh}",
            )
            == "male"
        ),
        "the corrected birth in the population store's inbox",
    )

    # Bình's place of birth took a split ward's default successor: a steward is asked.
    reviews = wait_for(
        lambda: [
            c
            for c in history(run.settings.kafka, run.registry, MergeTopics(run.prefix)).values()
            if c.latest["person"] == BINH and c.pending
        ],
        "a review of the split ward",
    )
    assert [(c.latest["field"], c.latest["decision"]) for c in reviews] == [
        ("place_of_birth", "review")
    ]
