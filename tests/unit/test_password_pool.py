"""Password hashing runs on a bounded pool: beyond its places a sign-in is refused at once, not queued."""

import threading

import pytest

from backend.auth.credentials import (
    PasswordPool,
    PasswordPoolBusy,
    hash_password,
    needs_rehash,
    password_matches,
)


def test_a_full_pool_refuses_at_once_and_frees_its_places() -> None:
    pool, release, started = PasswordPool(workers=1, queue=0), threading.Event(), threading.Event()

    def slow() -> str:
        started.set()  # the caller holds the pool's only place while this runs
        release.wait()
        return "done"

    results: list[str] = []
    caller = threading.Thread(target=lambda: results.append(pool.run(slow)))
    caller.start()
    started.wait()
    with pytest.raises(PasswordPoolBusy) as refused:
        pool.run(lambda: "second")
    assert refused.value.status == 429 and refused.value.details == {"retry_after": 1}
    release.set()
    caller.join()
    assert results == ["done"] and pool.run(lambda: "again") == "again"


def test_hashes_use_the_owasp_minimum_and_old_ones_still_verify() -> None:
    hashed = hash_password("correct horse")
    assert "$argon2id$v=19$m=19456,t=2,p=1$" in hashed and not needs_rehash(hashed)
    assert password_matches(hashed, "correct horse") and not password_matches(hashed, "wrong")
    # The library's previous default (64 MiB, t=3, p=4): still accepted, rehashed at the next sign-in.
    from argon2 import PasswordHasher

    old = PasswordHasher(memory_cost=65536, time_cost=3, parallelism=4).hash("correct horse")
    assert password_matches(old, "correct horse") and needs_rehash(old)
