"""Rate limits shared by every API process: GCRA over an in-process store or one Redis script.

GCRA (generic cell rate algorithm, as in redis-cell) keeps one number per (key, rule): the
theoretical arrival time (TAT) of the next request. A rule of `limit` requests per `window`
emits one request every `T = window / limit` and tolerates a burst of `limit`: a request at
`now` is allowed when `max(TAT, now) + T - now <= limit * T`, which then becomes the new TAT.
That is exact (no window-edge double bursts), O(1) per call, and the state expires by itself
once `TAT <= now`, since an absent key and an expired one mean the same thing: a full budget.

All arithmetic is in integer microseconds, so float drift can never refuse the last request
of a burst; `T` is rounded up to a whole microsecond, so the long-run rate never exceeds the
rule. State is per (key, rule): the same key under two rules (per second and per hour, say)
keeps two independent budgets.

A request usually meets several budgets (its credential's and its address's): `hit_all` takes them
together and spends all or none, so a request refused by one budget costs no other. With
`dry_run`, it only says whether a request would be allowed (and what would remain); budgets given as
`check` must allow the request too but are never spent (a request's failed-authentication budget is
checked in the same round trip as its request budgets are spent).
"""

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
import redis.exceptions

from backend.kit.errors import PersError

_US = 1_000_000


class RateLimitUnavailable(PersError):
    """The shared rate-limit store (Redis) could not be reached."""

    code = "rate_limit_unavailable"
    status = 503


@dataclass(frozen=True)
class Rule:
    """At most `limit` requests per `window_seconds`, all of which may come in one burst."""

    limit: int
    window_seconds: float

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"rate limit must be an int >= 1, got {self.limit!r}")
        if not (math.isfinite(self.window_seconds) and self.window_us >= 1):
            raise ValueError(f"rate window must be at least 1µs, got {self.window_seconds!r}s")

    @property
    def window_us(self) -> int:
        return round(self.window_seconds * _US)

    @property
    def emission_us(self) -> int:
        """Time between two requests at the sustained rate, rounded up (never faster than the rule)."""
        return -(-self.window_us // self.limit)

    @property
    def tolerance_us(self) -> int:
        """How far ahead of now the TAT may run: room for a burst of exactly `limit`."""
        return self.emission_us * self.limit

    def tag(self) -> str:
        return f"{self.limit}:{self.window_us}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: int  # whole seconds until one more request is allowed (>= 1); 0 when allowed


def _ceil_seconds(us: int) -> int:
    return max(1, -(-us // _US))


def _gcra(now_us: int, stored_tat: int | None, rule: Rule) -> tuple[Decision, int | None]:
    """One GCRA step: the decision, and the TAT to store (None when refused: nothing changes).

    The Lua script in RedisRateLimiter mirrors this function, key by key."""
    tat = now_us if stored_tat is None else max(stored_tat, now_us)
    new_tat = tat + rule.emission_us
    allow_at = new_tat - rule.tolerance_us
    if now_us < allow_at:
        return Decision(False, 0, _ceil_seconds(allow_at - now_us)), None
    remaining = (rule.tolerance_us - (new_tat - now_us)) // rule.emission_us
    return Decision(True, remaining, 0), new_tat


Budget = tuple[str, Rule]


def _combine(decisions: list[Decision]) -> Decision:
    """All allowed: the least remaining; any refused: the longest wait."""
    refused = [d for d in decisions if not d.allowed]
    if refused:
        return Decision(False, 0, max(d.retry_after for d in refused))
    return Decision(True, min(d.remaining for d in decisions), 0)


class RateLimiter(ABC):
    def hit(self, key: str, rule: Rule) -> Decision:
        """Counts one request for `key` under `rule` if it is allowed now; a refusal costs nothing."""
        return self.hit_all([(key, rule)])

    @abstractmethod
    def hit_all(
        self, budgets: Sequence[Budget], *, dry_run: bool = False, check: Sequence[Budget] = ()
    ) -> Decision:
        """Counts one request against every budget if all of them (and every `check` budget, which is
        never spent) allow it, else against none."""


class MemoryRateLimiter(RateLimiter):
    """In-process store for the embedded mode (one API process). Thread-safe.

    Stale entries (TAT in the past, i.e. a full budget) are swept whenever the table has doubled
    since the last sweep, so memory stays within about twice the live keys (at least
    `min_sweep_size`) at an amortised O(1) per call."""

    def __init__(self, now: Callable[[], float] = time.monotonic, *, min_sweep_size: int = 1024) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._tats: dict[tuple[str, int, int], int] = {}
        self._min_sweep_size = max(1, min_sweep_size)
        self._sweep_above = self._min_sweep_size

    def __len__(self) -> int:
        """Number of (key, rule) states held."""
        with self._lock:
            return len(self._tats)

    def hit_all(
        self, budgets: Sequence[Budget], *, dry_run: bool = False, check: Sequence[Budget] = ()
    ) -> Decision:
        states = [((key, rule.limit, rule.window_us), rule) for key, rule in [*budgets, *check]]
        with self._lock:
            now_us = math.floor(self._now() * _US)
            steps = [(state, _gcra(now_us, self._tats.get(state), rule)) for state, rule in states]
            decision = _combine([d for _, (d, _) in steps])
            if decision.allowed and not dry_run:
                for state, (_, new_tat) in steps[: len(budgets)]:
                    assert new_tat is not None
                    self._tats[state] = new_tat
                if len(self._tats) > self._sweep_above:
                    self._sweep(now_us)
            return decision

    def _sweep(self, now_us: int) -> None:
        self._tats = {state: tat for state, tat in self._tats.items() if tat > now_us}
        self._sweep_above = max(self._min_sweep_size, 2 * len(self._tats))


# KEYS: the state keys, those to spend first; ARGV: a dry-run flag, how many keys to spend, then each
# key's emission interval and burst tolerance in µs. Returns {allowed (0/1), least remaining, µs until
# all allow}. Mirrors `_gcra` and `_combine`, on Redis server time: nothing is written unless every key
# allows the request.
_GCRA_LUA = """
if redis.replicate_commands then redis.replicate_commands() end -- Redis < 5: writes after TIME
local dry_run = ARGV[1] == '1'
local spent = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local new_tats, remaining, wait = {}, nil, 0
for i = 1, #KEYS do
  local emission = tonumber(ARGV[2 * i + 1])
  local tolerance = tonumber(ARGV[2 * i + 2])
  local tat = now
  local stored = redis.call('GET', KEYS[i])
  if stored then tat = math.max(tonumber(stored), now) end
  local new_tat = tat + emission
  local allow_at = new_tat - tolerance
  if now < allow_at then wait = math.max(wait, allow_at - now) end
  new_tats[i] = new_tat
  local left = math.floor((tolerance - (new_tat - now)) / emission)
  if remaining == nil or left < remaining then remaining = left end
end
if wait > 0 then return {0, 0, wait} end
if not dry_run then
  for i = 1, spent do
    -- '%.0f': tostring() would keep only 14 significant digits of a 16-digit µs timestamp.
    local ttl = math.ceil((new_tats[i] - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', ttl)
  end
end
return {1, remaining, 0}
"""


class RedisRateLimiter(RateLimiter):
    """Store shared by all API processes: one atomic Lua script per hit, on Redis server time,
    with each key's TTL (PX) set to when its budget is full again."""

    def __init__(self, client: redis.Redis, prefix: str = "pers:rl:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_GCRA_LUA)

    def state_key(self, key: str, rule: Rule) -> str:
        """The Redis key holding the state of `key` under `rule`."""
        return f"{self._prefix}{key}:{rule.tag()}"

    def hit_all(
        self, budgets: Sequence[Budget], *, dry_run: bool = False, check: Sequence[Budget] = ()
    ) -> Decision:
        every = [*budgets, *check]
        keys = [self.state_key(key, rule) for key, rule in every]
        args = ["1" if dry_run else "0", str(len(budgets))]
        for _, rule in every:
            args += [str(rule.emission_us), str(rule.tolerance_us)]
        try:
            reply = self._script(keys=keys, args=args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RateLimitUnavailable(f"rate-limit store unreachable: {exc}") from exc
        # redis-py types script replies as Any; the script always returns three integers.
        allowed, remaining, wait_us = (int(x) for x in reply)
        if allowed:
            return Decision(True, remaining, 0)
        return Decision(False, 0, _ceil_seconds(wait_us))


def build_rate_limiter(redis_url: str | None) -> RateLimiter:
    """In-process limiter when no Redis URL is configured (embedded mode), else the shared one.

    Connecting is lazy: an unreachable Redis shows up as RateLimitUnavailable on `hit`. Timeouts
    keep a stalled Redis from stalling requests (a timeout in the URL's query string wins)."""
    if redis_url is None:
        return MemoryRateLimiter()
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
    return RedisRateLimiter(client)
