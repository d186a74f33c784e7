"""The JSON depth scan against the depth of the value itself, on JSON texts whose strings are full of
brackets, quotes and backslashes (the scan must skip what is inside strings)."""

import json
import random
from typing import Any

from backend.kit.body import nests_deeper_than

TRICKY = ['"', "\\", "[", "]", "{", "}", '\\"', "\\\\", '\\"[', "a"]


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def value(rng: random.Random, room: int) -> Any:
    roll = rng.random()
    if room == 0 or roll < 0.3:
        return "".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 6)))
    if roll < 0.4:
        return rng.choice([0, 1.5, None, True])
    items = [value(rng, room - 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.7:
        return items
    return {"".join(rng.choice(TRICKY) for _ in range(3)) + str(i): item for i, item in enumerate(items)}


def test_depth_scan_agrees_with_the_value() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        data = value(rng, rng.randint(0, 12))
        text = json.dumps(data, ensure_ascii=rng.random() < 0.5).encode()
        for limit in range(0, 10):
            assert nests_deeper_than(text, limit) == (depth(data) > limit), (text, limit)


def test_unclosed_and_long_bodies() -> None:
    assert nests_deeper_than(b"[" * 40, 32)  # never closed: the parser would still recurse
    assert not nests_deeper_than(b'["' + b"[" * 40 + b'"]', 32)  # inside a string
    assert not nests_deeper_than(b"[" + b"[]," * 200_000 + b"[]]", 32)  # wide, spanning chunks
    assert nests_deeper_than(b"[" + b"[]," * 200_000 + b"[" * 40 + b"]" * 41, 32)  # deep at the end
