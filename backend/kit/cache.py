"""A per-process map whose entries are forgotten a given time after they were put: for rows that change
seldom and may be seen late by a bounded time (documented where used)."""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    def __init__(self, max_entries: int = 10_000, now: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._max_entries, self._now = max_entries, now

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None or found[0] <= self._now():
            return None
        return found[1]

    def put(self, key: K, value: V, seconds: float) -> None:
        if seconds <= 0:
            return
        if len(self._entries) >= self._max_entries:  # bounded memory: start afresh
            self._entries = {}
        self._entries[key] = (self._now() + seconds, value)
