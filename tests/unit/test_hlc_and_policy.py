"""The hybrid logical clock never goes back; the default policy is the product contract's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.events import Hlc
from engine.hlc import HybridClock
from engine.policy import CIVIL, DEFAULT_POLICY, POPULATION, FieldPolicy, Rule

steps = st.lists(
    st.tuples(
        st.booleans(),
        st.integers(0, 50),
        st.builds(Hlc, st.integers(0, 60), st.integers(0, 5), st.just("other")),
    ),
    min_size=1,
    max_size=40,
)


@given(steps)
def test_readings_strictly_increase_and_follow_what_was_observed(
    script: list[tuple[bool, int, Hlc]],
) -> None:
    physical = iter([t for _, t, _ in script])
    clock = HybridClock("m1", lambda: next(physical))
    previous: Hlc | None = None
    for observe, _, remote in script:
        reading = clock.observe(remote) if observe else clock.tick()
        assert previous is None or (reading.wall_ms, reading.logical) > (
            previous.wall_ms,
            previous.logical,
        )
        if observe:
            assert (reading.wall_ms, reading.logical) > (remote.wall_ms, remote.logical)
        previous = reading


def test_a_clock_that_steps_back_keeps_counting() -> None:
    times = iter([100, 90, 90])
    clock = HybridClock("m1", lambda: next(times))
    assert [clock.tick() for _ in range(3)] == [
        Hlc(100, 0, "m1"),
        Hlc(100, 1, "m1"),
        Hlc(100, 2, "m1"),
    ]


def test_default_policy_gives_each_field_its_authority() -> None:
    assert DEFAULT_POLICY["full_name"] == FieldPolicy(Rule.AUTHORITY, CIVIL)
    assert DEFAULT_POLICY["date_of_death"].authority == CIVIL
    assert DEFAULT_POLICY["current_residence"] == FieldPolicy(Rule.AUTHORITY, POPULATION)
    assert DEFAULT_POLICY["pin"].authority == POPULATION


def test_an_authority_policy_must_name_a_store() -> None:
    with pytest.raises(ValueError, match="authoritative store"):
        FieldPolicy(Rule.AUTHORITY)
    with pytest.raises(ValueError, match="authoritative store"):
        FieldPolicy(Rule.LWW, CIVIL)
