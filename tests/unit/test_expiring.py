"""The per-process cache of seldom-changing rows: entries are forgotten on time."""

from backend.kit.cache import Expiring


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_its_seconds_and_no_longer() -> None:
    clock = Clock()
    cache: Expiring[str, int] = Expiring(now=clock)
    cache.put("token", 1, 5)
    clock.now += 4.9
    assert cache.get("token") == 1
    clock.now += 0.1
    assert cache.get("token") is None
    cache.put("token", 2, 0)  # caching turned off
    assert cache.get("token") is None


def test_memory_stays_bounded() -> None:
    cache: Expiring[int, int] = Expiring(max_entries=3, now=Clock())
    for key in range(4):
        cache.put(key, key, 60)
    assert cache.get(3) == 3 and cache.get(0) is None
