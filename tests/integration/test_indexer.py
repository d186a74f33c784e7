"""The indexer against a real anvil and Postgres: balances equal the chain's, relayed movements carry
their operation's (signer, ref) and wallets' own transfers are flagged external, contracts created
while indexing are picked up, and reorgs of depth 1 to 20 leave the mirror equal to the chain."""

import random
from pathlib import Path

from eth_account import Account
from sqlalchemy import select

from backend.chain.deploy import CreditSpec, TokenKind, create_credit, tenant_key
from backend.kit import migrate
from backend.runtime import Runtime
from backend.settings import Settings
from indexer import reads
from indexer.models import Event, TenantContract
from tests.conftest import REWARD_ID, STATUS_ID, _onboard, dev_account
from tests.mirror import World, indexing, world

OTHER_ID = 3  # a second transferable id, for a batch of two (OpenZeppelin logs a batch of one as single)


def test_relayed_and_external_movements_reach_balances(tmp_path: Path) -> None:
    with world(tmp_path) as w, indexing(w):
        t = w.tenant
        a, b, c = (h.address for h in t.holders)
        registry = t.chain.contract("RewardsToken", t.rewards)
        w.send(registry.functions.registerId(OTHER_ID, TokenKind.REWARD), t.admin.address)
        w.mint_credit(a, 1000)
        w.mint_rewards([(a, REWARD_ID, 50), (b, STATUS_ID, 3), (a, STATUS_ID, 1), (a, OTHER_ID, 9)])
        w.relayed_transfer(t.holders[0], b, 100)
        w.transfer(a, c, 10)  # external: ERC-20 transfer
        w.transfer_from(a, b, c, 20)  # external: approve + transferFrom by the spender
        w.transfer_1155(a, b, REWARD_ID, 5)  # external: safeTransferFrom
        w.batch_1155(a, c, [REWARD_ID, OTHER_ID], [7, 2])  # external: safeBatchTransferFrom
        w.wait_synced()
        w.assert_mirror_is_chain()
        with w.runtime.sessions() as session:
            assert reads.supply(session, "local", t.credit).supply == 1000
            page, total = reads.holders(session, "local", t.credit, 0, 1, 2)
            assert total == 3 and [(h.holder, h.amount) for h in page] == [(a.lower(), 870), (b.lower(), 100)]
            mine = reads.balances(session, "local", a)
            assert {(x.contract, x.token_id, x.amount) for x in mine.balances} == {
                (t.credit.lower(), 0, 870),
                (t.rewards.lower(), REWARD_ID, 38),
                (t.rewards.lower(), STATUS_ID, 1),
                (t.rewards.lower(), OTHER_ID, 7),
            }
            moves = session.scalars(
                select(Event).where(Event.name.in_(("Transfer", "TransferSingle", "TransferBatch")))
            ).all()
            relayed = [(e.name, e.from_address, e.to_address, e.amount) for e in moves if e.ref is not None]
            external = [(e.name, e.from_address, e.to_address, e.amount) for e in moves if e.ref is None]
            zero = "0x" + "00" * 20
            assert sorted(relayed, key=str) == sorted(
                [
                    ("Transfer", zero, a.lower(), 1000),
                    ("TransferSingle", zero, a.lower(), 50),
                    ("TransferSingle", zero, b.lower(), 3),
                    ("TransferSingle", zero, a.lower(), 1),
                    ("TransferSingle", zero, a.lower(), 9),
                    ("Transfer", a.lower(), b.lower(), 100),
                ],
                key=str,
            )
            assert sorted(external, key=str) == sorted(
                [
                    ("Transfer", a.lower(), c.lower(), 10),
                    ("Transfer", a.lower(), c.lower(), 20),
                    ("TransferSingle", a.lower(), b.lower(), 5),
                    ("TransferBatch", a.lower(), c.lower(), None),
                ],
                key=str,
            )
            batch = next(e for e in moves if e.name == "TransferBatch")
            assert batch.data == {"ids": [str(REWARD_ID), str(OTHER_ID)], "amounts": ["7", "2"]}
            # every relayed transfer's (signer, ref) is an outcome event of the same contract
            for e in moves:
                if e.ref is not None:
                    key = (e.contract, e.signer or "", e.ref)
                    assert reads.outcomes(session, "local", [key])[key].executed


def test_contracts_created_while_indexing_are_followed_only_from_the_deployer(tmp_path: Path) -> None:
    with world(tmp_path) as w, indexing(w):
        t = w.tenant
        w.mint_credit(t.holders[0].address, 5)
        w.wait_synced()
        chain = t.chain
        new, _ = create_credit(
            chain,
            t.factory,
            tenant_key("acme", "test"),
            CreditSpec(b"\2" * 32, "New", "NEW"),
            t.admin.address,
            [t.minter.address],
        )
        w.mint_credit(t.holders[1].address, 77, new)
        # Someone else's contract through the same (open) factory is not the platform's.
        stranger = dev_account(5)
        factory = chain.contract("TokenFactory", t.factory)
        tx = factory.functions.createCredit(
            tenant_key("acme", "test"), b"\3" * 32, "Fake", "FAKE", 0, 0, stranger.address, [stranger.address]
        ).transact({"from": stranger.address})
        chain.w3.eth.wait_for_transaction_receipt(tx)
        w.wait_synced()
        with w.runtime.sessions() as session:
            known = {c.address for c in session.scalars(select(TenantContract))}
            assert new.lower() in known
            assert len(known) == 4  # rewards, two credits at onboarding, the new one; not the stranger's
            assert reads.supply(session, "local", new).supply == 77
            assert reads.balances(session, "local", t.holders[1].address, [new]).balances[0].amount == 77


def test_reorgs_of_depth_1_to_20_leave_the_mirror_equal_to_the_chain(tmp_path: Path) -> None:
    """Each round indexes `depth` blocks of transfers, then drops them (evm_revert) and mines a
    different history: sometimes none (the transfers are removed), sometimes other transfers, sometimes
    replacement blocks of the same height with `anvil_reorg`."""
    rng = random.Random(7)
    with world(tmp_path) as w, indexing(w):
        t = w.tenant
        w.outsiders = [Account.create().address for _ in range(3)]
        holders = [h.address for h in t.holders]
        for h in holders:
            w.mint_credit(h, 10_000)
        w.mint_rewards([(h, REWARD_ID, 500) for h in holders])
        w.wait_synced()

        def traffic(blocks: int) -> None:
            for _ in range(blocks):
                sender = rng.choice(holders)
                to = rng.choice(holders + w.outsiders)
                kind = rng.randrange(3)
                if kind == 0:
                    w.transfer(sender, to, rng.randint(1, 50))
                elif kind == 1:
                    w.transfer_1155(sender, to, REWARD_ID, rng.randint(1, 5))
                else:
                    w.mint_credit(to, rng.randint(1, 100))

        for depth in range(1, 21):
            snapshot = w.tenant.chain.rpc("evm_snapshot")
            traffic(depth)
            w.wait_synced()
            w.assert_mirror_is_chain()
            how = depth % 3
            if how == 2:
                w.tenant.chain.rpc("anvil_reorg", depth, [])  # same height, empty blocks: transfers removed
            else:
                w.tenant.chain.rpc("evm_revert", snapshot)
                if how == 1:
                    traffic(rng.randint(1, depth + 2))  # other transfers instead
                else:
                    w.tenant.chain.rpc("anvil_mine", hex(rng.randint(0, depth)))  # removed
            w.wait_synced()
            w.assert_mirror_is_chain()


def test_the_embedded_chain_and_sqlite_take_the_same_path(tmp_path: Path) -> None:
    """`pers up`'s defaults: the in-process EVM and a SQLite file, the same follower and store."""
    settings = Settings(
        data_dir=tmp_path, network="embedded", master_key=None, relayer_key=None, indexer_poll_interval=0.05
    )
    migrate.upgrade(settings.sqlalchemy_url())
    runtime = Runtime.from_settings(settings)
    w = World(runtime, _onboard(runtime.chain("embedded")), "", settings.sqlalchemy_url(), network="embedded")
    try:
        with indexing(w):
            t = w.tenant
            a, b, c = (h.address for h in t.holders)
            w.mint_credit(a, 500)
            w.mint_credit(c, 9)  # "9" sorts above "387" as text, not as a number
            w.mint_rewards([(a, REWARD_ID, 4), (b, STATUS_ID, 1)])
            w.transfer(a, b, 120)
            w.transfer_1155(a, b, REWARD_ID, 3)
            w.wait_synced()
            w.assert_mirror_is_chain()
            snapshot = t.chain.rpc("evm_snapshot")
            w.transfer(a, b, 5)
            w.wait_synced()
            t.chain.rpc("evm_revert", snapshot)  # a reorg on the embedded chain too
            w.transfer(b, a, 7)
            w.wait_synced()
            w.assert_mirror_is_chain()
            with runtime.sessions() as session:
                assert reads.balances(session, "embedded", a, [t.credit]).balances[0].amount == 500 - 120 + 7
                page, _ = reads.holders(session, "embedded", t.credit, 0, 1, 10)
                assert [h.holder for h in page] == [a.lower(), b.lower(), c.lower()]
    finally:
        runtime.engine.dispose()
