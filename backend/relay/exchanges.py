"""The exchange pump: sends queued exchanges (composite `redeem` operations, docs/adr/0002) to the
network's `ExchangeRouter` and settles them from the router's own logs.

It shares the relay's lanes and `relayer_transactions` (a lane row locked FOR UPDATE gives the nonce;
the signed transaction is stored before broadcast), so the token pump's settling re-sends, replaces and
recovers these transactions like its own; that settling finds no operation pointing at them (legs keep
`relayer_tx_id` empty) and leaves their outcome to `settle` here, which reads the receipt of whichever
transaction carried the exchange's nonce. Both legs take the exchange's outcome: `mined`, or `failed`
with the failing leg's code; a transaction that ran out of gas ran nothing and queues them again."""

import threading
import time
import uuid
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from hexbytes import HexBytes
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound

from backend.businesses.models import Business
from backend.businesses.service import signer_context
from backend.chain import exchange as chain_exchange
from backend.chain import operations
from backend.chain.client import GAS_HEADROOM, Chain
from backend.chain.deploy import FACTORY, ROUTER
from backend.kit import jobs
from backend.kit.db import utcnow
from backend.relay import events
from backend.relay.lanes import broadcast, lane_lease, open_lanes, sign_on_lane
from backend.relay.models import Exchange, Lane, Operation, RelayerTransaction
from backend.relay.service import chain_operation, domain_of
from backend.runtime import Runtime
from backend.tokens.models import TokenType
from backend.users.models import User
from backend.users.service import wallet_context

log = structlog.get_logger()
POLL = 0.1  # seconds between looks when idle
LEG_LIFETIME = 15 * 60  # a leg's signed deadline: an unconsumed failed leg stays valid this long at most
MAX_PER_TX = 50  # exchanges per transaction (≈101k gas each, with room for their budgets)
REVERTS = (ContractLogicError, ContractCustomError, TransactionFailed, ValueError)
# The networks with exchanges to send or settle: looked at ten times a second, so built once and run
# without a session.
EXCHANGES = Exchange.metadata.tables[Exchange.__tablename__]
OPEN_NETWORKS = select(EXCHANGES.c.network).where(EXCHANGES.c.status.in_(("queued", "submitted"))).distinct()


class ExchangePump:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.lanes: dict[str, dict[str, LocalAccount]] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.step()
            except Exception:  # outlives a node or database hiccup; the rows keep the state
                log.exception("exchange.step_failed")
                busy = False
                stop.wait(1)
            if not busy:
                stop.wait(POLL)

    def step(self) -> bool:
        with self.runtime.engine.connect() as connection:
            networks = connection.scalars(OPEN_NETWORKS).all()
        busy = False
        for network in networks:
            busy |= self.send(network)
            busy |= self.settle(network)
        return busy

    def _chain(self, network: str) -> tuple[Chain, dict[str, LocalAccount], str]:
        chain = self.runtime.chain(network)
        contracts = self.runtime.platform(network).contracts
        if network not in self.lanes:
            self.lanes[network] = open_lanes(
                self.runtime.settings, self.runtime.sessions, chain, contracts[FACTORY]
            )
        return chain, self.lanes[network], contracts[ROUTER]

    # --- sending ----------------------------------------------------------------------------------

    def send(self, network: str) -> bool:
        chain, accounts, router = self._chain(network)
        with lane_lease(self.runtime.engine), jobs.committed(self.runtime.sessions) as session:
            lane = session.scalar(
                select(Lane)
                .where(Lane.network == network, Lane.address.in_(list(accounts)))
                .order_by(Lane.address)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if lane is None:
                return False
            exchanges = list(
                session.scalars(
                    select(Exchange)
                    .where(Exchange.status == "queued", Exchange.network == network)
                    .order_by(Exchange.created_at, Exchange.id)
                    .limit(MAX_PER_TX)
                    .with_for_update(skip_locked=True)
                )
            )
            if not exchanges:
                return False
            raw = self._send(session, chain, lane, accounts[lane.address], router, exchanges)
        if raw is not None:
            broadcast(chain, raw)
        return True

    def _send(
        self,
        session: Session,
        chain: Chain,
        lane: Lane,
        account: LocalAccount,
        router: str,
        exchanges: list[Exchange],
    ) -> bytes | None:
        legs = _legs(session, exchanges)
        deadline = int(time.time()) + LEG_LIFETIME
        signed: list[tuple[Exchange, chain_exchange.Exchange]] = []
        for x in exchanges:
            burn, mint = legs[x.id]
            built = self._signed(session, x, burn, mint, deadline)
            if built is None:
                _finish(session, x, [burn, mint], "failed", "signer_unavailable")
            else:
                signed.append((x, built))
        contract = chain_exchange.router(chain, router)
        while signed:
            data = contract.encode_abi("execute", args=[[b.as_abi() for _, b in signed]])
            try:
                estimate = chain.w3.eth.estimate_gas(
                    {"from": account.address, "to": contract.address, "data": data}
                )
            except REVERTS as exc:  # a leg's token reverts outside its exchange's budget: send it alone
                if len(signed) > 1:
                    signed = signed[: len(signed) // 2]
                    continue
                x = signed[0][0]
                _finish(session, x, list(legs[x.id]), "failed", "execution_reverted")
                log.warning("exchange.reverted", exchange=str(x.id), error=str(exc)[:200])
                return None
            if estimate <= chain.network.tx_gas_cap:
                break
            signed = signed[: max(1, len(signed) // 2)]
        if not signed:
            return None
        gas = int(estimate * GAS_HEADROOM)
        record = sign_on_lane(session, chain, lane, account, contract.address, data, gas)
        submitted_ops = []
        for x, _ in signed:
            x.status, x.relayer_tx_id, x.tx_hash = "submitted", record.id, record.tx_hash
            for op in legs[x.id]:
                op.status, op.tx_hash, op.submitted_at = "submitted", record.tx_hash, record.broadcast_at
                if op.signed_by != "external":
                    op.deadline = deadline
                submitted_ops.append(op)
        session.flush()
        events.notify_changed(session, submitted_ops, "transaction.submitted")
        return record.raw

    def _signed(
        self, session: Session, x: Exchange, burn: Operation, mint: Operation, deadline: int
    ) -> chain_exchange.Exchange | None:
        xid = bytes.fromhex(x.ref[2:])
        built = []
        for op in (burn, mint):
            if op.signed_by == "external":  # an own wallet's leg, signed when it was accepted
                assert op.deadline is not None and op.signature is not None
                signature = bytes.fromhex(op.signature[2:])
                built.append(chain_exchange.Leg(op.signer, chain_operation(op), op.deadline, signature))
                continue
            key = _key(self.runtime, session, op)
            if key is None:
                return None
            token = session.get(TokenType, op.token_type_id)
            assert token is not None
            dom = domain_of(self.runtime.settings, token)
            built.append(chain_exchange.signed_leg(dom, op.signer, key, chain_operation(op), deadline, xid))
        return chain_exchange.Exchange(xid, burn.contract_address, built[0], mint.contract_address, built[1])

    # --- settling ---------------------------------------------------------------------------------

    def settle(self, network: str) -> bool:
        """Records the exchanges of every transaction that has a receipt (its own, or that of a
        replacement with the same nonce); queues again those whose transaction the chain dropped."""
        chain, _, router = self._chain(network)
        with self.runtime.sessions() as session:
            sent = session.execute(
                select(RelayerTransaction.id, RelayerTransaction.lane_id, RelayerTransaction.nonce).where(
                    RelayerTransaction.id.in_(
                        select(Exchange.relayer_tx_id).where(
                            Exchange.status == "submitted", Exchange.network == network
                        )
                    )
                )
            ).all()
            carriers = {
                tx_id: session.execute(
                    select(RelayerTransaction.tx_hash, RelayerTransaction.status).where(
                        RelayerTransaction.lane_id == lane_id, RelayerTransaction.nonce == nonce
                    )
                ).all()
                for tx_id, lane_id, nonce in sent
            }
        progressed = False
        for tx_id, hashes in carriers.items():
            for tx_hash, _ in hashes:
                try:
                    receipt = chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
                except TransactionNotFound:
                    continue
                progressed |= self._record(chain, router, tx_id, receipt)
                break
            else:
                if hashes and all(status == "dropped" for _, status in hashes):
                    progressed |= self._requeue(chain, tx_id)
        return progressed

    def _requeue(self, chain: Chain, tx_id: uuid.UUID) -> bool:
        """The chain went past the transaction's nonce without it (see `recovery`): an exchange whose
        burn ref is still unused never ran and is sent again; a used one ran elsewhere and waits for
        an operator (its outcome is in the token's logs)."""
        with jobs.committed(self.runtime.sessions) as session:
            exchanges = list(
                session.scalars(
                    select(Exchange)
                    .where(Exchange.relayer_tx_id == tx_id, Exchange.status == "submitted")
                    .with_for_update(skip_locked=True)
                )
            )
            legs = _legs(session, exchanges)
            for x in exchanges:
                burn = legs[x.id][0]
                token = session.get(TokenType, burn.token_type_id)
                assert token is not None
                contract = operations.token(
                    chain, domain_of(self.runtime.settings, token).standard, burn.contract_address
                )
                if contract.functions.refUsed(burn.signer, bytes.fromhex(burn.ref[2:])).call():
                    log.error("exchange.ran_elsewhere", exchange=str(x.id))
                    continue
                _queue(x, legs[x.id])
        return bool(exchanges)

    def _record(self, chain: Chain, router: str, tx_id: uuid.UUID, receipt: Any) -> bool:
        with jobs.committed(self.runtime.sessions) as session:
            exchanges = list(
                session.scalars(
                    select(Exchange)
                    .where(Exchange.relayer_tx_id == tx_id, Exchange.status == "submitted")
                    .with_for_update(skip_locked=True)
                )
            )
            if not exchanges:
                return False
            legs = _legs(session, exchanges)
            tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
            if receipt["status"] != 1:
                limit = int(chain.w3.eth.get_transaction(receipt["transactionHash"])["gas"])
                if receipt["gasUsed"] >= limit - limit // 64:  # starved: nothing ran, send again
                    for x in exchanges:
                        _queue(x, legs[x.id])
                    return True
                for x in exchanges:
                    _finish(session, x, list(legs[x.id]), "failed", "execution_reverted", receipt, tx_hash)
                return True
            found = {o.id: o for o in chain_exchange.outcomes(router, receipt)}
            for x in exchanges:
                outcome = found.get(bytes.fromhex(x.ref[2:]))
                if outcome is None:  # not in this receipt: cannot happen for a mined router call
                    log.error("exchange.outcome_missing", exchange=str(x.id), tx=tx_hash)
                    continue
                status, code = ("mined", None) if outcome.executed else ("failed", outcome.code)
                _finish(session, x, list(legs[x.id]), status, code, receipt, tx_hash)
        return True


def _legs(session: Session, exchanges: list[Exchange]) -> dict[uuid.UUID, tuple[Operation, Operation]]:
    """(burn, mint) of each exchange."""
    ops = session.scalars(
        select(Operation).where(Operation.exchange_id.in_([x.id for x in exchanges])).with_for_update()
    )
    found: dict[uuid.UUID, dict[str, Operation]] = {}
    for op in ops:
        assert op.exchange_id is not None
        found.setdefault(op.exchange_id, {})[op.type] = op
    return {x: (legs["burn"], legs["mint"]) for x, legs in found.items()}


def _queue(x: Exchange, legs: tuple[Operation, Operation]) -> None:
    x.status, x.relayer_tx_id, x.tx_hash = "queued", None, None
    for op in legs:
        op.status, op.tx_hash, op.submitted_at = "queued", None, None


def _key(runtime: Runtime, session: Session, op: Operation) -> bytes | None:
    """The sealed key of the leg's platform signer (the user's managed wallet, the business's signer)."""
    assert op.signer_owner_id is not None
    if op.signed_by == "business":
        business = session.get(Business, op.signer_owner_id)
        if business is None or business.signer_address != op.signer or not business.signer_key_sealed:
            return None
        return runtime.keystore.open(business.signer_key_sealed, signer_context(business.id))
    user = session.get(User, op.signer_owner_id)
    if user is None or user.wallet_address != op.signer or not user.wallet_key_sealed:
        return None
    return runtime.keystore.open(user.wallet_key_sealed, wallet_context(user.id))


def _finish(
    session: Session,
    x: Exchange,
    legs: list[Operation],
    status: str,
    code: str | None,
    receipt: Any = None,
    tx_hash: str | None = None,
) -> None:
    """The exchange and both legs take one outcome; each mined leg records its token's log."""
    now = utcnow()
    x.status, x.error_code, x.finished_at = status, code, now
    if receipt is not None:
        x.block_number, x.tx_hash = receipt["blockNumber"], tx_hash
    for op in legs:
        op.status, op.error_code, op.finished_at = status, code, now
        if receipt is not None:
            op.tx_hash, op.block_number = tx_hash, receipt["blockNumber"]
            op.log_index = _log_index(receipt, op) if status == "mined" else None
    session.flush()
    events.notify_changed(session, legs, f"transaction.{status}")


def _log_index(receipt: Any, op: Operation) -> int | None:
    """Where the leg's token recorded it: its `OperationExecuted(ref, signer)` log."""
    wanted = bytes.fromhex(op.ref[2:])
    for entry in receipt["logs"]:
        topics = entry["topics"]
        own = entry["address"] == Web3.to_checksum_address(op.contract_address)
        if own and len(topics) == 3 and bytes(topics[1]) == wanted:
            return int(entry["logIndex"])
    return None


def start(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    """The exchange pump in a thread of this process (`pers up` and `pers worker` alike)."""
    pump = ExchangePump(runtime)
    thread = threading.Thread(target=pump.run, args=(stop,), name="exchange-pump", daemon=True)
    thread.start()
    return thread
