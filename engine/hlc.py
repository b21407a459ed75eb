"""A hybrid logical clock (Kulkarni et al.): physical time plus a counter, never going back.

``tick`` reads the clock for a local event; ``observe`` advances it past a remote reading so
every later local reading orders after it. The physical time source is injected, so the
clock is deterministic under test.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.events import Hlc


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    """The clock of one node (a merger process, a steward's tool)."""

    def __init__(self, node: str, physical_ms: Callable[[], int] = wall_ms) -> None:
        self._node, self._physical_ms = node, physical_ms
        self._wall, self._logical = 0, 0

    def tick(self) -> Hlc:
        """A reading for a local event, after every reading this clock has made or seen."""
        physical = self._physical_ms()
        if physical > self._wall:
            self._wall, self._logical = physical, 0
        else:
            self._logical += 1
        return Hlc(self._wall, self._logical, self._node)

    def observe(self, remote: Hlc) -> Hlc:
        """Take in a reading from elsewhere; the local reading that follows it."""
        physical = self._physical_ms()
        wall = max(self._wall, remote.wall_ms, physical)
        if wall == self._wall == remote.wall_ms:
            logical = max(self._logical, remote.logical) + 1
        elif wall == self._wall:
            logical = self._logical + 1
        elif wall == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        self._wall, self._logical = wall, logical
        return Hlc(wall, logical, self._node)
