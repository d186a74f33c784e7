"""The shared rate limiter on a real Redis (PERS_TEST_REDIS_URL, else 127.0.0.1:6379).

Each test works under its own random key prefix and deletes its keys afterwards."""

import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from backend.kit.ratelimit import (
    Decision,
    RateLimitUnavailable,
    RedisRateLimiter,
    Rule,
    build_rate_limiter,
)
from tests.conftest import free_port, missing

REDIS_URL = os.environ.get("PERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = "key:sk_test_ab12"


def connect() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


@pytest.fixture(scope="module", autouse=True)
def redis_up() -> None:
    try:
        connect().ping()
    except redis.exceptions.RedisError as exc:
        missing(
            f"Redis is not reachable at {REDIS_URL} ({exc}): start redis-server or set PERS_TEST_REDIS_URL"
        )


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"pers:test:rl:{uuid.uuid4().hex}:"
    yield prefix
    client = connect()
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def client() -> redis.Redis:
    return connect()


def test_a_burst_then_refusal(client: redis.Redis, prefix: str) -> None:
    rl, rule = RedisRateLimiter(client, prefix), Rule(5, 60)
    assert [rl.hit(KEY, rule) for _ in range(5)] == [Decision(True, n, 0) for n in (4, 3, 2, 1, 0)]
    refused = rl.hit(KEY, rule)
    assert refused.allowed is False and refused.remaining == 0
    assert 1 <= refused.retry_after <= 12  # one slot every 12 s
    assert rl.hit("addr:0xabc", rule).allowed  # another key has its own budget


def test_two_processes_share_one_budget(prefix: str) -> None:
    # Two clients with their own connection pools, as two API processes would have.
    api_a, api_b = RedisRateLimiter(connect(), prefix), RedisRateLimiter(connect(), prefix)
    rule = Rule(6, 60)
    decisions = [(api_a if i % 2 else api_b).hit(KEY, rule) for i in range(6)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [5, 4, 3, 2, 1, 0]
    assert not api_a.hit(KEY, rule).allowed
    assert not api_b.hit(KEY, rule).allowed


def test_keys_carry_a_ttl_until_the_budget_is_full_again(client: redis.Redis, prefix: str) -> None:
    rl, rule = RedisRateLimiter(client, prefix), Rule(4, 60)
    rl.hit(KEY, rule)
    key = rl.state_key(KEY, rule)
    assert key.startswith(prefix)
    assert 0 < client.pttl(key) <= 15_000  # one request of 4 per minute: full again within 15 s
    for _ in range(3):
        rl.hit(KEY, rule)
    assert 45_000 < client.pttl(key) <= 60_000
    assert not rl.hit(KEY, rule).allowed
    assert 45_000 < client.pttl(key) <= 60_000  # a refusal changes nothing
    assert all(client.pttl(k) > 0 for k in client.scan_iter(match=f"{prefix}*"))


def test_the_budget_refills(client: redis.Redis, prefix: str) -> None:
    rl, rule = RedisRateLimiter(client, prefix), Rule(2, 1)  # one slot every 0.5 s
    assert rl.hit(KEY, rule).allowed and rl.hit(KEY, rule).allowed
    assert not rl.hit(KEY, rule).allowed
    time.sleep(1.2)  # a whole window and then some: the burst is back
    assert rl.hit(KEY, rule).allowed and rl.hit(KEY, rule).allowed


def test_concurrent_hits_never_exceed_the_limit(prefix: str) -> None:
    rule = Rule(40, 3600)  # nothing refills during the test
    limiters = [RedisRateLimiter(connect(), prefix) for _ in range(4)]
    start = threading.Barrier(16)
    results: list[bool] = []
    lock = threading.Lock()

    def worker(rl: RedisRateLimiter) -> None:
        start.wait()
        mine = [rl.hit(KEY, rule).allowed for _ in range(25)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker, args=(limiters[i % 4],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 400
    assert sum(results) == 40


def test_an_unreachable_redis_raises_rate_limit_unavailable() -> None:
    rl = build_rate_limiter(f"redis://127.0.0.1:{free_port()}/0")
    assert isinstance(rl, RedisRateLimiter)
    with pytest.raises(RateLimitUnavailable) as exc:
        rl.hit(KEY, Rule(1, 1))
    assert (exc.value.code, exc.value.status) == ("rate_limit_unavailable", 503)


def test_hit_all_spends_every_budget_or_none(client: redis.Redis, prefix: str) -> None:
    rl, small, large = RedisRateLimiter(client, prefix), Rule(2, 60), Rule(10, 60)
    budgets = [("key:a", small), ("addr:1", large)]
    assert [rl.hit_all(budgets).allowed for _ in range(3)] == [True, True, False]
    assert rl.hit_all([("addr:1", large)], dry_run=True).remaining == 7  # refusals and dry runs spent nothing
    assert rl.hit("addr:1", large).remaining == 7


def test_checked_budgets_must_allow_and_are_never_spent(client: redis.Redis, prefix: str) -> None:
    rl, rule, failures = RedisRateLimiter(client, prefix), Rule(10, 60), Rule(1, 60)
    assert rl.hit_all([("key:a", rule)], check=[("fail:1", failures)]).allowed
    assert rl.hit("fail:1", failures).allowed  # the check spent nothing: its one request is still there
    assert not rl.hit_all([("key:a", rule)], check=[("fail:1", failures)]).allowed
    assert rl.hit("key:a", rule).remaining == 8  # the refusal spent nothing either
