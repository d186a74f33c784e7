"""Operations on a token that cannot take them: a pending (or failed) token is refused at the API with
`token_not_active`; a token its admin paused on chain, which the API cannot see, ends `failed` with
the chain's code and nothing minted."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from eth_account import Account
from sqlalchemy import create_engine, func, select, update

from backend.kit.db import unit_of_work
from backend.relay.models import Operation
from backend.runtime import current
from backend.tenants.models import TenantEnvironment
from backend.tokens.models import TokenType
from tests.e2e.test_relay import Shop, mint, open_shop, settled
from tests.platform import Platform


def set_token_status(platform: Platform, token_id: str, status: str) -> None:
    """As the activation job leaves a token (the embedded stack shares this process's database)."""
    change = update(TokenType).where(TokenType.id == uuid.UUID(token_id)).values(status=status)
    if platform.env is None:
        with unit_of_work(current().sessions) as session:
            session.execute(change)
        return
    engine = create_engine(platform.env["PERS_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(change)
    engine.dispose()


def test_a_pending_or_failed_token_refuses_operations_at_the_api(platform: Platform) -> None:
    shop = open_shop(platform, "Dormant")
    holder = Account.create().address
    body = {"type": "mint", "tokenId": shop.credit_id, "to": holder, "amount": "3"}
    listed_before = platform.client.get("/v1/transactions", headers=shop.key).json()["meta"]["total"]
    for status in ("pending", "failed"):
        set_token_status(platform, shop.credit_id, status)
        single = platform.client.post("/v1/transactions", json=body, headers=shop.key)
        assert single.status_code == 409 and single.json()["error"]["code"] == "token_not_active", single.text
        batch = platform.client.post("/v1/transactions/batch", json={"operations": [body]}, headers=shop.key)
        assert batch.status_code == 202, batch.text
        item = batch.json()["data"][0]
        assert (item["status"], item["error"]["code"]) == (409, "token_not_active")
    assert platform.client.get("/v1/transactions", headers=shop.key).json()["meta"]["total"] == listed_before
    set_token_status(platform, shop.credit_id, "active")
    assert settled(platform, shop.key, mint(platform, shop, holder, "3")["id"])["status"] == "mined"
    assert shop.credit.functions.balanceOf(holder).call() == 3


@contextmanager
def tenant_admin(platform: Platform, shop: Shop) -> Iterator[str]:
    """The tenant's admin wallet on the production stack's anvil, impersonated and funded for the
    block: its own transactions (a pause) go straight to the chain."""
    assert platform.env is not None
    engine = create_engine(platform.env["PERS_DATABASE_URL"])
    with engine.connect() as connection:
        admin: str = connection.execute(
            select(TenantEnvironment.admin_address).where(
                TenantEnvironment.tenant_id == uuid.UUID(shop.tenant.id),
                TenantEnvironment.environment == "test",
            )
        ).scalar_one()
    engine.dispose()
    rpc = platform.w3.provider.make_request
    rpc("anvil_impersonateAccount", [admin])  # type: ignore[arg-type]
    rpc("anvil_setBalance", [admin, hex(10**18)])  # type: ignore[arg-type]
    try:
        yield admin
    finally:
        rpc("anvil_stopImpersonatingAccount", [admin])  # type: ignore[arg-type]


def test_a_token_paused_on_chain_fails_its_operations_and_mints_nothing(
    production_platform: Platform,
) -> None:
    platform = production_platform
    assert platform.env is not None
    shop = open_shop(platform, "Paused")
    holder = Account.create().address
    engine = create_engine(platform.env["PERS_DATABASE_URL"])
    with tenant_admin(platform, shop) as admin:
        paused = shop.credit.functions.pause().transact({"from": admin})
        assert platform.w3.eth.wait_for_transaction_receipt(paused)["status"] == 1
        failed = [mint(platform, shop, holder, str(n + 1))["id"] for n in range(3)]
        for op_id in failed:
            done = settled(platform, shop.key, op_id)
            assert (done["status"], done["errorCode"]) == ("failed", "execution_reverted"), done
        assert shop.credit.functions.balanceOf(holder).call() == 0
        resumed = shop.credit.functions.unpause().transact({"from": admin})
        assert platform.w3.eth.wait_for_transaction_receipt(resumed)["status"] == 1
    assert settled(platform, shop.key, mint(platform, shop, holder, "5")["id"])["status"] == "mined"
    assert shop.credit.functions.balanceOf(holder).call() == 5
    with engine.connect() as connection:
        count = connection.execute(
            select(func.count()).where(
                Operation.id.in_([uuid.UUID(i) for i in failed]), Operation.status == "failed"
            )
        ).scalar()
    engine.dispose()
    assert count == 3
