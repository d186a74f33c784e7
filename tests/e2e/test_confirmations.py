"""The indexer completes the relay's lifecycle, on `pers up`'s stack (in process) and beside the
production processes (`pers indexer`): a mined operation becomes `confirmed`, and one whose block a
reorg dropped goes back to `submitted`, is sent again (the stored bytes, or their fee-bumped
replacement) and is confirmed; a completed claim whose mint a reorg dropped and whose second run
failed becomes `failed`, in the analytics too."""

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eth_account import Account
from sqlalchemy import create_engine, func, select

from backend import mirror
from backend.analytics.models import ClaimDay
from backend.runtime import current
from backend.settings import PROJECT_ROOT
from indexer import process
from tests.e2e.test_campaigns import campaign_of, member, ok, settled_claim
from tests.e2e.test_relay import mint, open_shop, settled
from tests.e2e.test_relay_inactive_tokens import tenant_admin
from tests.platform import Platform, wait_for


@contextmanager
def indexer(platform: Platform) -> Iterator[None]:
    """The indexer of the platform's network, for the duration of the block."""
    if platform.env is None:
        stop = threading.Event()
        runtime = current()
        thread = process.start(mirror.follower(runtime, "embedded"), runtime.engine, stop)
        try:
            yield
        finally:
            stop.set()
            thread.join(60)
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "indexer"],
        env={**platform.env, "PERS_INDEXER_POLL_INTERVAL": "0.1"},
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def rpc(platform: Platform, method: str, *params: Any) -> Any:
    return platform.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def test_mined_operations_are_confirmed_and_reorged_ones_sent_again(platform: Platform) -> None:
    shop = open_shop(platform, "Confirm")
    holder = Account.create().address
    headers = shop.key

    def status(op_id: str, wanted: str) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: platform.client.get(f"/v1/transactions/{op_id}", headers=headers).json(),
            lambda op: op["status"] == wanted,
            f"operation {op_id} {wanted}",
        )
        return found

    with indexer(platform):
        confirmed = status(mint(platform, shop, holder, "5")["id"], "confirmed")
    assert confirmed["confirmedAt"] is not None and confirmed["blockNumber"] is not None

    # Mined while no indexer runs, then dropped by a reorg before the indexer sees it.
    snapshot = rpc(platform, "evm_snapshot")
    dropped = settled(platform, headers, mint(platform, shop, holder, "7")["id"])
    assert dropped["status"] == "mined"
    rpc(platform, "evm_revert", snapshot)
    for _ in range(3):
        rpc(platform, "evm_mine")
    assert shop.credit.functions.balanceOf(holder).call() == 5
    with indexer(platform):
        again = status(dropped["id"], "confirmed")
    assert shop.credit.functions.balanceOf(holder).call() == 12
    assert again["ref"] == dropped["ref"] and again["confirmedAt"] is not None


def test_a_completed_claim_whose_mint_a_reorg_dropped_and_then_failed_fails(
    production_platform: Platform,
) -> None:
    platform = production_platform
    assert platform.env is not None
    shop = open_shop(platform, "Reorged")
    campaign = campaign_of(platform, shop, amount="4")
    someone = member(platform, shop)
    body = {"campaignId": campaign["id"], "userId": someone["id"]}
    snapshot = rpc(platform, "evm_snapshot")
    claim = ok(platform.client.post("/v1/campaigns/claims", json=body, headers=shop.key), 202)
    assert settled_claim(platform, shop, claim["id"])["status"] == "completed"
    engine = create_engine(platform.env["PERS_DATABASE_URL"])

    def counted() -> tuple[int, int]:
        with engine.connect() as connection:
            row = connection.execute(
                select(func.sum(ClaimDay.completed), func.sum(ClaimDay.failed)).where(
                    ClaimDay.tenant_id == uuid.UUID(shop.tenant.id)
                )
            ).one()
        return int(row[0]), int(row[1])

    assert counted() == (1, 0)
    # The mint's block leaves the chain; the token is paused on the new one, so the mint's second
    # run (the same stored bytes) reverts.
    rpc(platform, "evm_revert", snapshot)
    try:
        with tenant_admin(platform, shop) as admin:
            paused = shop.credit.functions.pause().transact({"from": admin})
            assert platform.w3.eth.wait_for_transaction_receipt(paused)["status"] == 1
            for _ in range(3):
                rpc(platform, "evm_mine")
            with indexer(platform):
                failed = wait_for(
                    lambda: ok(platform.client.get(f"/v1/campaigns/claims/{claim['id']}", headers=shop.key)),
                    lambda c: c["status"] == "failed",
                    "the claim failing",
                )
            op = ok(platform.client.get(f"/v1/transactions/{claim['operationIds'][0]}", headers=shop.key))
            assert (op["status"], op["errorCode"]) == ("failed", "execution_reverted")
            assert failed["finishedAt"] is not None
            assert counted() == (0, 1)
            assert shop.credit.functions.balanceOf(someone["walletAddress"]).call() == 0
            unpaused = shop.credit.functions.unpause().transact({"from": admin})
            assert platform.w3.eth.wait_for_transaction_receipt(unpaused)["status"] == 1
    finally:
        engine.dispose()
