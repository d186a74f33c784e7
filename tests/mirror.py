"""Shared by the indexer's tests: a fresh anvil with a tenant onboarded and a fresh Postgres mirror,
traffic on its tokens (relayed operations and wallets' own transfers), and the check that the mirror
equals the chain."""

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from web3 import Web3

from backend import mirror
from backend.chain import operations, typed_data
from backend.chain.client import NodeNonces
from backend.chain.operations import SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Operation, TokenStandard
from backend.runtime import Runtime
from backend.settings import Settings
from indexer import process, reads
from indexer.models import BalanceChange, Event, Holding, Supply
from tests.conftest import REWARD_ID, STATUS_ID, Tenant, _onboard, running_anvil, throwaway_postgres

CREDIT, REWARDS = TokenStandard.CREDIT, TokenStandard.REWARDS
_NAMESPACE, _refs = secrets.randbits(128), count(1)


@dataclass
class World:
    """A tenant on a fresh anvil, a migrated database for its mirror, and the accounts that trade."""

    runtime: Runtime
    tenant: Tenant
    rpc_url: str
    database_url: str
    outsiders: list[str] = field(default_factory=list)
    network: str = "local"

    @property
    def w3(self) -> Any:
        return self.tenant.chain.w3

    @property
    def accounts(self) -> list[str]:
        t = self.tenant
        return [t.admin.address, t.minter.address, *(h.address for h in t.holders), *self.outsiders]

    # --- traffic ------------------------------------------------------------------------------------

    def _signed(
        self, signer: LocalAccount, standard: TokenStandard, address: str, ops: list[Operation]
    ) -> None:
        dom = operations.domain(self.tenant.chain, standard, address)
        deadline = int(time.time()) + 3600
        signature = typed_data.sign(typed_data.digest(dom, signer.address, ops, deadline), signer.key)
        operations.submit(
            self.tenant.chain, standard, address, [SignedGroup(signer.address, ops, deadline, signature)]
        )

    def mint_credit(self, to: str, amount: int, address: str | None = None) -> None:
        """Relayed: signed by the tenant's minter, executed by the platform's relayer."""
        op = Operation(ZERO_ADDRESS, to, amount, ref(), 0)
        self._signed(self.tenant.minter, CREDIT, address or self.tenant.credit, [op])

    def mint_rewards(self, mints: list[tuple[str, int, int]]) -> None:
        """Relayed, one group: (to, token id, amount) each."""
        ops = [Operation(ZERO_ADDRESS, to, amount, ref(), token_id) for to, token_id, amount in mints]
        self._signed(self.tenant.minter, REWARDS, self.tenant.rewards, ops)

    def relayed_transfer(self, holder: LocalAccount, to: str, amount: int) -> None:
        self._signed(holder, CREDIT, self.tenant.credit, [Operation(holder.address, to, amount, ref(), 0)])

    def send(self, call: Any, sender: str) -> None:
        self.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))

    def transfer(self, holder: str, to: str, amount: int) -> None:
        """External: the holder's own ERC-20 `transfer`."""
        self.send(
            self.tenant.chain.contract("CreditToken", self.tenant.credit).functions.transfer(to, amount),
            holder,
        )

    def transfer_from(self, owner: str, spender: str, to: str, amount: int) -> None:
        token = self.tenant.chain.contract("CreditToken", self.tenant.credit)
        self.send(token.functions.approve(spender, amount), owner)
        self.send(token.functions.transferFrom(owner, to, amount), spender)

    def transfer_1155(self, holder: str, to: str, token_id: int, amount: int) -> None:
        token = self.tenant.chain.contract("RewardsToken", self.tenant.rewards)
        self.send(token.functions.safeTransferFrom(holder, to, token_id, amount, b""), holder)

    def batch_1155(self, holder: str, to: str, ids: list[int], amounts: list[int]) -> None:
        token = self.tenant.chain.contract("RewardsToken", self.tenant.rewards)
        self.send(token.functions.safeBatchTransferFrom(holder, to, ids, amounts, b""), holder)

    # --- the mirror ---------------------------------------------------------------------------------

    def synced(self) -> bool:
        """The mirror holds the node's head block, by hash."""
        head = self.w3.eth.get_block("latest")
        with self.runtime.sessions() as session:
            found = reads.cursor(session, self.network)
            return (
                found is not None
                and found.block_number == head["number"]
                and found.block_hash == head["hash"].to_0x_hex()
            )

    def wait_synced(self, timeout: float = 90) -> None:
        wait_until(self.synced, "the mirror to reach the head", timeout)

    def chain_balance(self, contract: str, token_id: int, holder: str) -> int:
        c, holder = contract.lower(), Web3.to_checksum_address(holder)
        if c in (self.tenant.credit.lower(), self.tenant.capped_credit.lower()):
            return int(self.tenant.chain.contract("CreditToken", contract).functions.balanceOf(holder).call())
        return int(
            self.tenant.chain.contract("RewardsToken", contract).functions.balanceOf(holder, token_id).call()
        )

    def assert_mirror_is_chain(self) -> None:
        """Every holder's balance, every supply and holder count as on chain; every event and balance
        change of a block still on the chain."""
        t = self.tenant
        tokens = [(t.credit, 0), (t.capped_credit, 0), *((t.rewards, i) for i in (REWARD_ID, STATUS_ID, 3))]
        with self.runtime.sessions() as session:
            held = {(h.contract, h.token_id, h.holder): h.amount for h in session.scalars(select(Holding))}
            for contract, token_id, holder in held:
                assert held[(contract, token_id, holder)] == self.chain_balance(contract, token_id, holder), (
                    holder
                )
            for contract, token_id in tokens:
                balances = {a: self.chain_balance(contract, token_id, a) for a in self.accounts}
                for account, amount in balances.items():
                    assert held.get((contract.lower(), token_id, account.lower()), 0) == amount, (
                        contract,
                        account,
                    )
                supply = reads.supply(session, self.network, contract, token_id)
                if token_id == 0:
                    total = t.chain.contract("CreditToken", contract).functions.totalSupply().call()
                    assert supply.supply == total
                assert supply.supply == sum(balances.values()), (contract, token_id)
                assert supply.holders == sum(1 for amount in balances.values() if amount > 0)
            blocks = {
                n
                for (n,) in session.execute(
                    select(Event.block_number).union(select(BalanceChange.block_number))
                )
            }
            rows = session.execute(
                select(Event.block_number, Event.block_hash).union(
                    select(BalanceChange.block_number, BalanceChange.block_hash)
                )
            )
            canonical = {n: self.w3.eth.get_block(n)["hash"].to_0x_hex() for n in blocks}
            orphans = [(n, h) for n, h in rows if canonical[n] != h]
            assert not orphans, f"events of orphaned blocks remain: {orphans[:3]}"
            assert session.scalar(select(Supply).limit(1)) is not None


def ref() -> bytes:
    return typed_data.make_ref(_NAMESPACE, next(_refs))


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def world(data_dir: Path, **settings: Any) -> Iterator[World]:
    with running_anvil() as node, throwaway_postgres(migrated=True) as database_url:
        url = f"http://127.0.0.1:{node.port}"
        s = Settings(
            data_dir=data_dir,
            network="local",
            rpc_url=url,
            database_url=database_url,
            master_key=None,
            relayer_key=None,
            indexer_poll_interval=0.05,
            **settings,
        )
        runtime = Runtime.from_settings(s)
        chain = runtime.chain("local")
        # No pump runs here to settle the relayer's lane transactions, so after an evm_revert its lane
        # would keep nonces the chain forgot: the indexer's tests take the node's nonces instead.
        chain.nonces = NodeNonces()
        try:
            yield World(runtime, _onboard(chain), url, database_url)
        finally:
            runtime.engine.dispose()


@contextmanager
def indexing(w: World, rpc_url: str | None = None) -> Iterator[threading.Thread]:
    """The indexer in a thread of this process (as `pers up` runs it), stopped afterwards."""
    stop = threading.Event()
    thread = process.start(mirror.follower(w.runtime, w.network, rpc_url), w.runtime.engine, stop)
    try:
        yield thread
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the indexer did not stop"


def mirror_rows(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the mirror's tables but the cursor's timestamps, sorted: two runs compare equal."""
    from backend.kit.db import make_engine
    from indexer.models import BlockHeader, Cursor, TenantContract

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = {
                table.__tablename__: connection.execute(select(table.__table__)).all()
                for table in (Event, BalanceChange, Holding, Supply, TenantContract, BlockHeader)
            }
            tables["cursor"] = connection.execute(select(Cursor.block_number, Cursor.block_hash)).all()
    finally:
        engine.dispose()
    return {name: sorted((tuple(row) for row in rows), key=repr) for name, rows in tables.items()}
