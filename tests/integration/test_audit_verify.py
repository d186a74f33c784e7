"""The audit's check of the mirror against the chain (`backend.audit.verify`, what `POST /v1/audit/verify`
and `pers audit verify` run), on anvil and Postgres with the indexer running: after wallets' transfers
and reorgs it finds no mismatch; a holding or a supply altered by hand is named with both amounts."""

import uuid
from pathlib import Path

from eth_account import Account
from sqlalchemy import update

from backend.audit import verify
from backend.auth.principal import TenantScope
from backend.chain.deploy import tenant_key
from backend.kit.db import unit_of_work
from backend.tenants.models import Tenant, TenantEnvironment
from indexer.models import Holding, Supply
from tests.conftest import REWARD_ID
from tests.mirror import World, indexing, world


def books(w: World) -> TenantScope:
    """The tenant in the books, as onboarding records it: its environment on the network, its key."""
    tenant_id = uuid.uuid4()
    with unit_of_work(w.runtime.sessions) as session:
        session.add(Tenant(id=tenant_id, name="Acme", slug=f"acme-{tenant_id.hex[:8]}"))
        session.flush()
        session.add(
            TenantEnvironment(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                environment="test",
                project_key=f"pk_test_{tenant_id.hex}",
                network="local",
                status="active",
                tenant_key=tenant_key("acme", "test").to_0x_hex(),
                admin_address=w.tenant.admin.address,
                admin_key_sealed="sealed",
                rewards_address=w.tenant.rewards,
            )
        )
    return TenantScope(tenant_id, "test")


def test_verify_finds_the_mirror_equal_after_reorgs_and_names_altered_rows(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        t = w.tenant
        with indexing(w):
            a, b, c = (h.address for h in t.holders)
            outsider = Account.create().address
            w.mint_credit(a, 1000)
            w.mint_rewards([(a, REWARD_ID, 20)])
            w.transfer(a, b, 30)
            w.transfer_1155(a, c, REWARD_ID, 4)
            w.wait_synced()
            for depth, how in ((2, "revert"), (3, "reorg"), (1, "revert")):
                snapshot = t.chain.rpc("evm_snapshot")
                for _ in range(depth):
                    w.transfer(a, outsider, 1)
                w.wait_synced()
                if how == "reorg":
                    t.chain.rpc("anvil_reorg", depth, [])
                else:
                    t.chain.rpc("evm_revert", snapshot)
                    w.transfer(b, outsider, 2)
                w.wait_synced()
        scope = books(w)
        stages: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            stages[stage] = stages.get(stage, 0) + done
            assert stages[stage] <= total

        report = verify.verify(w.runtime.sessions, scope, lambda _: t.chain, progress)
        assert report.mismatches == [] and report.holders.mismatched == report.supplies.mismatched == 0
        assert report.holders.checked == stages["balances"] >= 5 and report.supplies.checked >= 3
        assert report.as_of_block == w.w3.eth.block_number
        # The traffic went straight to the contracts, not through the books: its relayed events carry refs no
        # operation has (unmatched); the wallets' own transfers are external.
        assert report.events.unmatched == 2 * 2 and report.events.external >= 4
        assert not report.ok

        with unit_of_work(w.runtime.sessions) as session:
            session.execute(
                update(Holding).where(Holding.holder == b.lower(), Holding.token_id == 0).values(amount=12345)
            )
            session.execute(update(Supply).where(Supply.contract == t.rewards.lower()).values(supply=1))
        report = verify.verify(w.runtime.sessions, scope, lambda _: t.chain)
        found = {(m.kind, m.contract, m.holder, m.mirror, m.chain) for m in report.mismatches}
        assert found == {
            ("balance", t.credit.lower(), b.lower(), 12345, 30 - 2 - 2),
            ("supply", t.rewards.lower(), None, 1, 20),
        }
