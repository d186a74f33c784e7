"""`pers indexer` as a process: SIGKILLed at random points of a backfill and restarted, it ends with
exactly the rows of an uninterrupted run (same events, balance changes, holdings, supplies, contracts,
headers, cursor); a second instance stands by and takes over when the leader dies."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from eth_account import Account

from backend.kit import migrate
from backend.runtime import Runtime
from backend.settings import PROJECT_ROOT
from indexer import reads
from tests.conftest import REWARD_ID, throwaway_postgres
from tests.mirror import World, indexing, mirror_rows, wait_until, world


def backfill(w: World, rng: random.Random) -> None:
    """About 6,000 logs over some 400 blocks: relayed batch mints, wallets' transfers, empty blocks."""
    holders = [h.address for h in w.tenant.holders]
    w.outsiders = [Account.create().address for _ in range(20)]
    for _ in range(25):
        w.mint_rewards(
            [(rng.choice(holders + w.outsiders), REWARD_ID, rng.randint(1, 9)) for _ in range(100)]
        )
        w.mint_credit(rng.choice(holders), rng.randint(1, 1000))
        w.transfer_1155(holders[0], rng.choice(w.outsiders), REWARD_ID, 1) if rng.random() < 0.5 else None
        w.tenant.chain.rpc("anvil_mine", hex(rng.randint(0, 30)))


def indexer_env(w: World, data_dir: Path, **extra: str) -> dict[str, str]:
    """`pers indexer`'s environment for the world's node and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERS_")}
    env.update(
        PERS_DATA_DIR=str(data_dir),
        PERS_DATABASE_URL=w.database_url,
        PERS_NETWORK="local",
        PERS_RPC_URL=w.rpc_url,
        PERS_INDEXER_POLL_INTERVAL="0.05",
        **extra,
    )
    return env


def test_sigkilled_indexer_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    rng = random.Random(11)
    with world(tmp_path) as w:
        backfill(w, rng)
        head = w.w3.eth.block_number
        # many small chunks: many points to be killed between
        env = indexer_env(w, tmp_path, PERS_INDEXER_MAX_RANGE="4", PERS_INDEXER_TARGET_LOGS="300")

        def cursor() -> int:
            with w.runtime.sessions() as session:
                return reads.as_of_block(session, "local")

        kills = 0
        while cursor() < head:
            proc = subprocess.Popen(
                [sys.executable, "-m", "backend.cli", "indexer"],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                if kills < 5:
                    written = cursor()
                    wait_until(lambda p=proc, s=written: cursor() > s or p.poll() is not None, "a write")  # type: ignore[misc]
                    time.sleep(rng.uniform(0, 0.1))
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                else:
                    wait_until(lambda: cursor() >= head, "the restarted indexer to finish")
            finally:
                proc.kill()
                proc.wait(30)
        assert kills == 5, "the backfill ended before the indexer could be killed five times"
        interrupted = mirror_rows(w.database_url)

        with throwaway_postgres() as other_url:
            migrate.upgrade(other_url)
            runtime = Runtime.from_settings(w.runtime.settings.model_copy(update={"database_url": other_url}))
            straight = World(runtime, w.tenant, w.rpc_url, other_url)
            try:
                with indexing(straight):
                    straight.wait_synced()
                uninterrupted = mirror_rows(other_url)
            finally:
                runtime.engine.dispose()
        assert len(interrupted["mirror_events"]) > 5000
        assert interrupted == uninterrupted


def test_a_standby_takes_over_when_the_leader_dies(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        holder = w.tenant.holders[0].address
        env = indexer_env(w, tmp_path)
        logs = [tmp_path / "first.log", tmp_path / "second.log"]
        first, second = (
            subprocess.Popen(
                [sys.executable, "-m", "backend.cli", "indexer"],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
            for log in logs
        )
        try:
            w.mint_credit(holder, 1)
            w.wait_synced()
            wait_until(lambda: any("indexer.standby" in log.read_text() for log in logs), "a standby")
            leader, standby = (first, second) if "indexer.standby" in logs[1].read_text() else (second, first)
            leader.send_signal(signal.SIGKILL)
            leader.wait(30)
            w.mint_credit(holder, 2)
            w.wait_synced()  # only the standby is left to write it
            w.assert_mirror_is_chain()
            assert standby.poll() is None
        finally:
            for proc in (first, second):
                proc.kill()
                proc.wait(30)
