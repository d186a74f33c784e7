"""The mirror checked against the chain, for one tenant environment: every holder's balance against
`balanceOf`, every credit's supply against `totalSupply` (the ERC-1155 keeps no per-id supply: each
id's supply against the sum of its holders' `balanceOf`), all at the mirror's own block; and every
event mapped to an operation of the books or flagged external. The API runs it on the platform's node;
`pers audit verify` on any node the auditor trusts.

The mirror is read in one snapshot (`kit.db.read_snapshot`), so an indexer writing meanwhile
cannot make it disagree with itself."""

from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, Literal

from eth_typing import ChecksumAddress
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.contract import Contract

from backend.audit import service
from backend.audit.schemas import Counts, EventCounts, Mismatch, UnmatchedEvent, VerifyReport
from backend.auth.principal import TenantScope
from backend.balances import service as balances
from backend.chain.client import Chain
from backend.kit.db import read_snapshot
from backend.kit.errors import ChainUnavailable, PersError
from indexer import reads

SHOWN = 100  # mismatches and unmatched events listed in a report (all are counted)
BATCH = 100  # holders per `balanceOfBatch` call
# (stage, items done since the last call, the stage's total)
Progress = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    pass


def verify(
    sessions: sessionmaker[Session],
    scope: TenantScope,
    chain_of: Callable[[str], Chain],
    progress: Progress = _quiet,
) -> VerifyReport:
    """The report for `scope`, checked on `chain_of(network)`'s node."""
    with sessions() as session:
        read_snapshot(session)
        return _Verification(session, scope, chain_of, progress).run()


class _Verification:
    def __init__(
        self, session: Session, scope: TenantScope, chain_of: Callable[[str], Chain], progress: Progress
    ) -> None:
        self.session, self.scope, self.chain_of, self.progress = session, scope, chain_of, progress
        self.books = balances.ledger(session, scope, discovered=True)
        self.mismatches: list[Mismatch] = []
        self.holders, self.supplies, self.events = Counts(), Counts(), EventCounts()
        self.unmatched: list[UnmatchedEvent] = []
        self.sums: dict[tuple[str, int], int] = defaultdict(int)  # chain balances of each ERC-1155 id
        self.code: dict[str, bool] = {}  # contract: has code at the mirror's block

    def run(self) -> VerifyReport:
        network = self.books.network
        cursor = None if network is None else reads.cursor(self.session, network)
        if network is None or cursor is None or cursor.block_number < 0:
            return self._report(-1)
        self.block = cursor.block_number
        self.chain = self.chain_of(network)
        try:
            head = self.chain.w3.eth.block_number
        except OSError as exc:
            raise ChainUnavailable(f"the node did not answer: {exc}") from exc
        if head < self.block:
            raise PersError(
                f"the node is at block {head}, behind the mirror's {self.block}: ask a node that is synced",
                code="node_behind",
                status=409,
            )
        if cursor.chain_id != self.chain.chain_id:
            raise PersError(
                "the node serves another chain than the mirror", code="chain_mismatch", status=409
            )
        self._balances(network)
        self._supplies(network)
        self._events(network)
        return self._report(self.block)

    def _report(self, block: int) -> VerifyReport:
        return VerifyReport(
            network=self.books.network,
            as_of_block=block,
            ok=not self.mismatches and not self.events.unmatched,
            holders=self.holders,
            supplies=self.supplies,
            events=self.events,
            mismatches=self.mismatches[:SHOWN],
            unmatched_events=self.unmatched[:SHOWN],
        )

    def _mismatch(
        self,
        kind: Literal["balance", "supply"],
        contract: str,
        token_id: int,
        holder: str | None,
        mirror: int,
        chain: int,
    ) -> None:
        counts = self.holders if kind == "balance" else self.supplies
        counts.mismatched += 1
        token = self.books.token(contract, token_id)
        self.mismatches.append(
            Mismatch(
                kind=kind,
                contract=contract,
                chain_token_id=token_id,
                token_id=None if token is None else token.id,
                holder=holder,
                mirror=mirror,
                chain=chain,
            )
        )

    def _deployed(self, address: str) -> bool:
        """Whether the contract has code at the mirror's block: one the books name may be newer than
        the mirror (it holds nothing there, and its calls answer nothing)."""
        if address not in self.code:
            code = self._call_node(lambda: self.chain.w3.eth.get_code(_checksum(address), self.block))
            self.code[address] = len(code) > 0
        return self.code[address]

    def _contract(self, address: str) -> Contract:
        name = "CreditToken" if self.books.kinds[address] == "credit" else "RewardsToken"
        return self.chain.contract(name, address)

    def _call(self, function: Any) -> Any:
        return self._call_node(lambda: function.call(block_identifier=self.block))

    def _call_node(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except OSError as exc:
            raise ChainUnavailable(f"the node did not answer: {exc}") from exc

    def _balances(self, network: str) -> None:
        contracts = self.books.contracts
        total = reads.holdings_count(self.session, network, contracts)
        held = reads.holdings(self.session, network, contracts)
        for group in _groups(held, BATCH):
            by_contract: dict[str, list[Any]] = defaultdict(list)
            for holding in group:
                by_contract[holding.contract].append(holding)
            for address, rows in by_contract.items():
                contract = self._contract(address)
                if self.books.kinds[address] == "credit":
                    found = [self._call(contract.functions.balanceOf(_checksum(r.holder))) for r in rows]
                else:
                    accounts = [_checksum(r.holder) for r in rows]
                    found = self._call(
                        contract.functions.balanceOfBatch(accounts, [r.token_id for r in rows])
                    )
                for row, amount in zip(rows, found, strict=True):
                    self.sums[(address, row.token_id)] += amount
                    if amount != row.amount:
                        self._mismatch("balance", address, row.token_id, row.holder, row.amount, amount)
            self.holders.checked += len(group)
            self.progress("balances", len(group), total)

    def _supplies(self, network: str) -> None:
        mirrored = {
            (s.contract, s.token_id): s.supply
            for s in reads.supplies(self.session, network, self.books.contracts)
        }
        credits = [c for c, kind in self.books.kinds.items() if kind == "credit"]
        keys = sorted({*mirrored, *((c, 0) for c in credits), *self.sums})
        for contract, token_id in keys:
            if not self._deployed(contract):
                chain = 0
            elif self.books.kinds.get(contract) == "credit":
                chain = self._call(self._contract(contract).functions.totalSupply())
            else:
                chain = self.sums.get((contract, token_id), 0)
            mirror = mirrored.get((contract, token_id), 0)
            if mirror != chain:
                self._mismatch("supply", contract, token_id, None, mirror, chain)
            self.supplies.checked += 1
            self.progress("supplies", 1, len(keys))

    def _events(self, network: str) -> None:
        _, total = reads.events(self.session, network, self.books.contracts, 1, 1)
        for chunk in service.stream(self.session, self.scope, service.EventFilters()):
            for event in chunk:
                self.events.checked += 1
                if event.external:
                    self.events.external += 1
                elif event.operation_id is not None:
                    self.events.mapped += 1
                else:
                    self.events.unmatched += 1
                    if len(self.unmatched) < SHOWN:
                        self.unmatched.append(
                            UnmatchedEvent(
                                tx_hash=event.tx_hash,
                                log_index=event.log_index,
                                contract=event.contract,
                                name=event.name,
                                signer=event.signer,
                                ref=event.ref,
                            )
                        )
            self.progress("events", len(chunk), total)


def _groups(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while group := list(islice(items, size)):
        yield group


def _checksum(address: str) -> ChecksumAddress:
    return Web3.to_checksum_address(address)
