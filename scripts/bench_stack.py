"""What the campaign benches start from: the production processes on a throwaway Postgres database,
RabbitMQ, Redis and a fresh anvil, with a shop and an active campaign paying 1 credit a claim (a
budget of 10 times n). Every process and the database are gone when the context ends."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from tests.conftest import production_stack, running_anvil, service_url, throwaway_postgres
from tests.e2e.test_campaigns import campaign_of
from tests.e2e.test_relay import Shop, open_shop
from tests.platform import Platform


def process_of(port: int) -> int:
    """The `pers api` process listening on `port`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"api" in args and str(port).encode() in args:
            return int(pid)
    raise SystemExit("pers api not found")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass(frozen=True)
class Bench:
    database: str  # its URL
    platform: Platform
    shop: Shop
    campaign: dict[str, Any]


@contextmanager
def campaign_bench(n: int) -> Iterator[Bench]:
    broker = service_url("PERS_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//", 5672, "RabbitMQ")
    redis = service_url("PERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379, "Redis")
    with (
        throwaway_postgres() as database,
        running_anvil() as node,
        production_stack(Path(mkdtemp()), database, broker, redis, f"http://127.0.0.1:{node.port}") as stack,
    ):
        shop = open_shop(stack.platform, "Bench")
        campaign = campaign_of(stack.platform, shop, amount="1", max_amount=str(10 * n))
        yield Bench(database, stack.platform, shop, campaign)
