"""GCRA rate limiting on the in-process store, on a fake clock (no sleeps)."""

import threading

import pytest

from backend.kit.errors import PersError
from backend.kit.ratelimit import (
    Decision,
    MemoryRateLimiter,
    RateLimiter,
    RateLimitUnavailable,
    RedisRateLimiter,
    Rule,
    build_rate_limiter,
)

KEY = "key:sk_test_ab12"


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def limiter(clock: Clock, **kwargs: int) -> MemoryRateLimiter:
    return MemoryRateLimiter(now=clock, **kwargs)


def test_a_burst_of_limit_is_allowed_then_refused_with_retry_after() -> None:
    clock = Clock()
    rl, rule = limiter(clock), Rule(5, 10)
    assert [rl.hit(KEY, rule) for _ in range(5)] == [Decision(True, n, 0) for n in (4, 3, 2, 1, 0)]
    # One request every 2s: the next slot opens 2s after the burst.
    assert rl.hit(KEY, rule) == Decision(False, 0, 2)
    clock.advance(0.5)
    assert rl.hit(KEY, rule) == Decision(False, 0, 2)  # 1.5s, rounded up
    clock.advance(1.4)
    assert rl.hit(KEY, rule) == Decision(False, 0, 1)  # 0.1s still counts as a whole second
    clock.advance(0.1)
    assert rl.hit(KEY, rule) == Decision(True, 0, 0)
    assert rl.hit(KEY, rule).allowed is False


def test_refusals_do_not_consume_budget() -> None:
    clock = Clock()
    rl, rule = limiter(clock), Rule(2, 2)
    assert all(rl.hit(KEY, rule).allowed for _ in range(2))
    for _ in range(50):
        assert not rl.hit(KEY, rule).allowed
    clock.advance(1)
    assert rl.hit(KEY, rule).allowed


def test_the_budget_refills_at_limit_per_window() -> None:
    clock = Clock()
    rl, rule = limiter(clock), Rule(10, 60)  # one every 6s
    assert all(rl.hit(KEY, rule).allowed for _ in range(10))
    assert not rl.hit(KEY, rule).allowed
    clock.advance(5.999)
    assert rl.hit(KEY, rule) == Decision(False, 0, 1)
    clock.advance(0.001)
    assert rl.hit(KEY, rule) == Decision(True, 0, 0)
    # Half a window refills half the budget, never more.
    clock.advance(30)
    assert [rl.hit(KEY, rule).allowed for _ in range(6)] == [True] * 5 + [False]
    # A long idle period refills up to the burst, not beyond.
    clock.advance(3600)
    assert sum(rl.hit(KEY, rule).allowed for _ in range(20)) == 10


def test_sustained_traffic_gets_exactly_the_rate() -> None:
    clock = Clock()
    rl, rule = limiter(clock), Rule(3, 1)  # 1/3 s is not a whole number of µs: no float drift
    allowed = 0
    for _ in range(3000):  # 30 s of a request every 10 ms
        allowed += rl.hit(KEY, rule).allowed
        clock.advance(0.01)
    # The initial burst of 3, then 3 per second, at most.
    assert 3 + 3 * 30 - 2 <= allowed <= 3 + 3 * 30


def test_remaining_counts_down_and_back_up() -> None:
    clock = Clock()
    rl, rule = limiter(clock), Rule(4, 4)
    assert [rl.hit(KEY, rule).remaining for _ in range(4)] == [3, 2, 1, 0]
    assert rl.hit(KEY, rule).remaining == 0
    clock.advance(3)
    assert rl.hit(KEY, rule).remaining == 2


def test_keys_and_rules_are_independent() -> None:
    clock = Clock()
    rl, rule = limiter(clock), Rule(2, 60)
    other = "addr:0xabc0000000000000000000000000000000000def"
    assert all(rl.hit(KEY, rule).allowed for _ in range(2))
    assert not rl.hit(KEY, rule).allowed
    assert rl.hit(other, rule) == Decision(True, 1, 0)
    # The same key under another rule has its own budget.
    assert rl.hit(KEY, Rule(100, 3600)) == Decision(True, 99, 0)
    assert not rl.hit(KEY, rule).allowed


def test_stale_keys_are_evicted() -> None:
    clock = Clock()
    rl, rule = limiter(clock, min_sweep_size=8), Rule(5, 1)

    def churn(prefix: str, bound: int) -> None:
        for i in range(1000):  # each key's state is stale 0.2 s after its only hit
            assert rl.hit(f"{prefix}:{i}", rule).allowed
            assert len(rl) <= bound
            clock.advance(0.25)

    churn("addr", 8 + 1)
    # Live keys (budget not full again yet) are kept: memory is about twice them at most.
    for i in range(100):
        assert rl.hit(f"live:{i}", rule).allowed
    assert 100 <= len(rl) <= 2 * 100 + 1
    # Once stale, they go too, and the table shrinks back.
    clock.advance(1)
    churn("late", 2 * 100 + 2)
    assert len(rl) <= 8 + 1
    # A forgotten key starts with a full budget, exactly as a stale one would.
    assert rl.hit("live:0", rule) == Decision(True, 4, 0)


def test_eviction_never_forgets_a_spent_budget() -> None:
    clock = Clock()
    rl, rule = limiter(clock, min_sweep_size=1), Rule(1, 60)
    assert rl.hit(KEY, rule).allowed
    for i in range(80):  # many sweeps while KEY's budget is still spent
        rl.hit(f"other:{i}", Rule(1, 0.001))
        clock.advance(0.0625)  # exact in binary: 80 steps are 5 s
    assert len(rl) < 10
    assert rl.hit(KEY, rule) == Decision(False, 0, 55)


def test_many_threads_on_one_key_never_exceed_the_limit() -> None:
    rl, rule = limiter(Clock()), Rule(50, 1)  # frozen clock: nothing refills
    start = threading.Barrier(16)
    results: list[bool] = []
    results_lock = threading.Lock()

    def worker() -> None:
        start.wait()
        mine = [rl.hit(KEY, rule).allowed for _ in range(100)]
        with results_lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1600
    assert sum(results) == 50


@pytest.mark.parametrize(
    ("limit", "window"), [(0, 1), (-1, 1), (1, 0), (1, -5), (1, float("nan")), (1, float("inf")), (1, 1e-9)]
)
def test_bad_rules_are_refused(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        Rule(limit, window)


def test_the_rule_rounds_in_the_safe_direction() -> None:
    rule = Rule(3, 1)
    assert rule.emission_us == 333_334  # rounded up: never faster than 3 per second
    assert rule.tolerance_us == 3 * 333_334  # a burst of exactly 3 fits


def test_unavailable_is_a_503_pers_error() -> None:
    err = RateLimitUnavailable("down")
    assert isinstance(err, PersError)
    assert (err.code, err.status) == ("rate_limit_unavailable", 503)


def test_the_factory_picks_the_store() -> None:
    assert isinstance(build_rate_limiter(None), MemoryRateLimiter)
    shared = build_rate_limiter("redis://127.0.0.1:6379/0")  # lazy: connects on first hit only
    assert isinstance(shared, RedisRateLimiter)
    assert isinstance(shared, RateLimiter)


def test_hit_all_spends_every_budget_or_none() -> None:
    clock = Clock()
    rl, small, large = limiter(clock), Rule(2, 60), Rule(10, 60)
    budgets = [("key:a", small), ("addr:1", large)]
    assert rl.hit_all(budgets) == Decision(True, 1, 0)
    assert rl.hit_all(budgets) == Decision(True, 0, 0)
    refused = rl.hit_all(budgets)
    assert not refused.allowed and refused.retry_after == 30
    # The refusals spent nothing of the address's budget: 8 of its 10 remain.
    assert [rl.hit("addr:1", large).remaining for _ in range(8)] == list(range(7, -1, -1))


def test_a_dry_run_spends_nothing() -> None:
    rl, rule = limiter(Clock()), Rule(1, 60)
    assert rl.hit_all([(KEY, rule)], dry_run=True) == Decision(True, 0, 0)
    assert rl.hit(KEY, rule).allowed and not rl.hit_all([(KEY, rule)], dry_run=True).allowed


def test_checked_budgets_must_allow_and_are_never_spent() -> None:
    rl, rule, failures = limiter(Clock()), Rule(10, 60), Rule(1, 60)
    assert rl.hit_all([(KEY, rule)], check=[("fail:1", failures)]) == Decision(True, 0, 0)
    assert rl.hit("fail:1", failures).allowed  # the check spent nothing: its one request is still there
    refused = rl.hit_all([(KEY, rule)], check=[("fail:1", failures)])
    assert not refused.allowed and refused.retry_after == 60
    assert rl.hit(KEY, rule).remaining == 8  # the refusal spent nothing either
