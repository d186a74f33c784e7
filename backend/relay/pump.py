"""The pump: drains queued operations per (network, contract), in order, into relayer transactions.

One step per contract, in one short unit of work: lock a free lane and the oldest queued operations
(SKIP LOCKED, so several workers share the work without sending anything twice), sign each platform
signer's operations as one group, pack the groups under the gas cap, sign the transaction with the
lane's next nonce and store its raw bytes and hash with the operations marked `submitted`. Only after
that commit is it broadcast. The next transaction is prepared while the node runs this one; settling
fetches the pending receipts in one JSON-RPC batch and reads each one's own token logs per (signer,
ref). Operations travel as plain rows and are written with a few set-based statements per transaction
(the hot path carries a thousand of them)."""

import functools
import threading
import time
import uuid
from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_tester.exceptions import TransactionFailed
from eth_typing import HexStr
from hexbytes import HexBytes
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Uuid,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError

from backend.businesses.models import Business
from backend.businesses.service import signer_context
from backend.chain.client import GAS_HEADROOM, Chain
from backend.chain.deploy import FACTORY
from backend.chain.operations import RECEIVER_GAS, Failure, Outcome, token
from backend.chain.typed_data import Domain, TokenStandard, encoded_digest, sign
from backend.kit import jobs
from backend.kit.db import among, utcnow
from backend.kit.types import keccak
from backend.ops import metrics
from backend.relay import events
from backend.relay.encoding import EncodedGroup, as_int, encode_operation, execute_data, field
from backend.relay.lanes import broadcast, lane_lease, open_lanes, sign_on_lane
from backend.relay.models import Lane, Operation, RelayerTransaction
from backend.relay.recovery import consumed, recover
from backend.relay.service import domain_of
from backend.runtime import Runtime
from backend.tokens.models import TokenType
from backend.users.models import User
from backend.users.service import wallet_context

log = structlog.get_logger()
POLL, IDLE_POLL = 0.05, 0.5  # seconds between looks at the queue: just after work, and when idle
# After a transaction that took every queued operation, the next one waits at least GATHER and until
# a transaction has settled (at most IDLE_POLL): operations accepted one per request then gather into
# one transaction instead of one each, more of them the busier the machine, and a transaction's fixed
# work (lane, fees, gas, signature, receipt, its rows) is shared by all of them.
GATHER = 0.15
RECEIPT_POLL = 0.01  # seconds between looks for the receipts of transactions in flight
GROUP_LIFETIME = 3600  # a platform-signed group's deadline, from signing
# Operations of one kind (type, and who signs) cost a steady gas each: once a large enough transaction
# of one kind has been mined on a contract, the next ones are sized from it (with headroom) instead of
# asking the node to run each transaction twice (`eth_estimateGas`). One that runs out of gas consumed
# nothing: its operations go back to the queue and the contract is estimated again.
MODEL_MIN_OPS, MODEL_BASE, MODEL_HEADROOM = 20, 60_000, 1.5
# Nodes refuse larger transactions into their pool (geth: 128 KiB); the rest is room for the envelope.
MAX_CALLDATA = 120_000
FEE_BUMP = 1.25  # a replacement pays this much more (nodes want at least 10% more for the same nonce)
REVERTS = (ContractLogicError, ContractCustomError, TransactionFailed, ValueError)
OPERATION = Operation.metadata.tables[Operation.__tablename__]
TRANSACTION = RelayerTransaction.metadata.tables[RelayerTransaction.__tablename__]
# What sending needs of a queued operation, and settling of a submitted one. The loop's queries name
# the tables' columns, not the mapped attributes (their rows skip the ORM's loading: 11% of the pump's
# CPU), and each row becomes a named tuple (reading a SQLAlchemy row's attribute costs 0.66 µs, twenty
# times a tuple's, and the pump reads a dozen per operation).
Claimed = namedtuple(
    "Claimed",
    "id tenant_id environment token_type_id contract_address chain_token_id type from_address to_address"
    " amount ref signer signed_by signer_owner_id deadline signature",
)
Settled = namedtuple(
    "Settled", "id tenant_id environment token_type_id contract_address type signer signed_by ref created_at"
)
Op = Any  # a Claimed or a Settled
Kind = tuple[str, bool]  # an operation's type, and whether its group is its own (`_kind`)
# The loop's statements, built once (building one costs more CPU than running it).
# The queues ((network, contract) with queued operations) one index probe each, in the queue index's
# order: a DISTINCT reads every queued row, thousands of them while batches wait.
QUEUE = (OPERATION.c.network, OPERATION.c.contract_address)
FIRST_QUEUE = (
    select(*QUEUE)
    .where(OPERATION.c.status == "queued", OPERATION.c.exchange_id.is_(None))  # legs: the exchange pump
    .order_by(*QUEUE)
    .limit(1)
)
AFTER = tuple_(bindparam("network", type_=String), bindparam("contract", type_=String))
NEXT_QUEUE = FIRST_QUEUE.where(tuple_(*QUEUE) > AFTER)
LOCK_LANE = (
    select(Lane)
    .where(Lane.network == bindparam("network"), Lane.address.in_(bindparam("addresses", expanding=True)))
    .order_by(Lane.address)
    .limit(1)
    .with_for_update(skip_locked=True)
)
CLAIM = (
    select(*(OPERATION.c[name] for name in Claimed._fields))
    .where(
        OPERATION.c.status == "queued",
        OPERATION.c.network == bindparam("network"),
        OPERATION.c.contract_address == bindparam("contract"),
        OPERATION.c.exchange_id.is_(None),
    )
    .order_by(OPERATION.c.created_at, OPERATION.c.id)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
PENDING = (
    select(TRANSACTION.c.id, TRANSACTION.c.network, TRANSACTION.c.tx_hash, TRANSACTION.c.broadcast_at)
    .where(TRANSACTION.c.status == "pending")
    .order_by(TRANSACTION.c.created_at)
    .limit(100)
)
LOCK_PENDING = (
    select(RelayerTransaction)
    .where(RelayerTransaction.id == bindparam("tx_id"), RelayerTransaction.status == "pending")
    .with_for_update(skip_locked=True)
)
# The transactions that share a nonce with one (replaced by it, or it by them).
SIBLINGS = select(RelayerTransaction).where(
    RelayerTransaction.lane_id == bindparam("lane_id"),
    RelayerTransaction.nonce == bindparam("nonce"),
    RelayerTransaction.id != bindparam("id"),
)
SETTLING = select(*(OPERATION.c[name] for name in Settled._fields)).where(
    OPERATION.c.relayer_tx_id.in_(bindparam("carriers", expanding=True)), OPERATION.c.status == "submitted"
)


@dataclass(frozen=True)
class Progress:
    """What a sending step of the pump did."""

    sent: bool = False  # a transaction went out
    full: bool = False  # one took as many operations as a transaction holds: more may be queued


class Pump:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.lanes: dict[str, dict[str, LocalAccount]] = {}
        self.keys: dict[tuple[str, uuid.UUID], bytes | None] = {}
        self.domains: dict[str, Domain] = {}
        self.has_code: dict[str, bool] = {}
        self.contracts: dict[tuple[str, str], Contract] = {}
        self.gas_per_op: dict[tuple[str, Kind], float] = {}  # by (contract, kind of operation)
        self.sent = threading.Event()  # a transaction was broadcast: its receipt is awaited
        self.settled = threading.Event()  # a transaction's operations took their outcome

    # --- the loops --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Sends in this thread and settles in another: each waits on the database and the node much
        of its time, and a batch's next transaction is claimed and signed while the last one's
        receipt is read and recorded."""
        self.open(stop)
        threading.Thread(target=self.settling, args=(stop,), name="relay-settle", daemon=True).start()
        pause = POLL
        while not stop.is_set():
            try:
                progress = self.step()
            except Exception:  # the pump outlives a node or database hiccup; the rows keep the state
                log.exception("relay.step_failed")
                progress = Progress()
                stop.wait(1)
            if progress.full:
                continue  # more are queued than one transaction holds: the next goes at once
            if progress.sent:
                pause = POLL
                stop.wait(GATHER)
                self.settled.wait(IDLE_POLL)
                continue
            # Idle: look less and less often, unless an operation is queued (this process, another one
            # through Postgres NOTIFY, or settling queued one again).
            events.queued.wait(pause)
            events.queued.clear()
            pause = min(pause * 2, IDLE_POLL)

    def settling(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                settled, in_flight = self.settle()
            except Exception:
                log.exception("relay.settle_failed")
                settled, in_flight = False, False
                stop.wait(1)
            if settled:
                self.settled.set()
                events.queued.set()  # operations may be queued again (out of gas, recovered)
                continue
            self.sent.wait(RECEIPT_POLL if in_flight else IDLE_POLL)
            self.sent.clear()

    def open(self, stop: threading.Event) -> None:
        """Registers the lanes of the environments' networks and resyncs their nonces at start."""
        settings = self.runtime.settings
        networks = {n for n in (settings.network_for("test"), settings.network_for("live")) if n}
        while networks and not stop.is_set():
            try:
                for network in sorted(networks):
                    self.chain(network)
                return
            except Exception:  # the node or the database is not up yet: the pump waits for them
                log.exception("relay.open_failed")
                stop.wait(2)

    def step(self) -> "Progress":
        with self.runtime.sessions() as session:
            queues = _queues(session)
        sent = [self.pump(network, contract) for network, contract in queues]
        return Progress(any(s is not None for s in sent), any(sent))

    def chain(self, network: str) -> tuple[Chain, dict[str, LocalAccount]]:
        chain = self.runtime.chain(network)
        if network not in self.lanes:
            factory = self.runtime.platform(network).contracts[FACTORY]
            self.lanes[network] = open_lanes(self.runtime.settings, self.runtime.sessions, chain, factory)
        return chain, self.lanes[network]

    # --- sending ----------------------------------------------------------------------------------

    def pump(self, network: str, contract: str) -> bool | None:
        """Sends the contract's oldest queued operations: None when nothing was claimed, else whether
        the claim was full (more may be queued)."""
        chain, accounts = self.chain(network)
        limit = self.runtime.settings.relay_max_ops_per_tx
        with lane_lease(self.runtime.engine), jobs.committed(self.runtime.sessions) as session:
            lane = session.scalar(LOCK_LANE, {"network": network, "addresses": list(accounts)})
            if lane is None:
                return None  # every lane is busy with another worker
            claim = {"network": network, "contract": contract, "limit": limit}
            ops = list(map(Claimed._make, session.execute(CLAIM, claim)))
            if not ops:
                return None
            raw = self._send(session, chain, lane, accounts[lane.address], contract, ops)
        if raw is not None:  # stored before broadcast: a crash from here on re-sends these bytes
            self.settled.clear()
            broadcast(chain, raw)
            self.sent.set()
        return len(ops) >= limit

    def _send(
        self,
        session: Session,
        chain: Chain,
        lane: Lane,
        account: LocalAccount,
        contract_address: str,
        ops: list[Op],
    ) -> bytes | None:
        """The signed transaction for the oldest operations that fit, stored with them (None when
        all of them failed before a transaction)."""
        dom = self._domain(session, ops[0])
        contract = self._contract(chain, dom.standard, contract_address)
        ops = ops[: MAX_CALLDATA // (32 * len(dom.standard.fields))]  # the words of the operations alone
        modelled = self._modelled(contract_address, ops, chain.network.tx_gas_cap)
        if modelled is not None:
            ops = ops[: len(modelled)]
        while True:
            groups, deadline = self._groups(session, dom, ops)
            ops = [op for _, members in groups for op in members]
            if not groups:
                return None
            data = execute_data(dom.standard, [g for g, _ in groups])
            size = len(data) // 2 - 1
            if size > MAX_CALLDATA:  # signed-elsewhere operations carry a group and a signature each
                ops = ops[: max(1, len(ops) * MAX_CALLDATA // size)]
                continue
            if modelled is not None:
                gas = modelled[len(ops) - 1]
                break
            call = {"from": account.address, "to": contract.address, "data": HexStr(data)}
            try:
                estimate = _needed_gas(chain, call, ops)
                gas, fits = int(estimate * GAS_HEADROOM), estimate <= chain.network.tx_gas_cap
            except REVERTS as exc:
                gas, fits = 0, False
                if len(ops) == 1:
                    self._fail(session, ops, "execution_reverted")
                    log.warning("relay.reverted", op=str(ops[0].id), error=str(exc)[:200])
                    return None
            if fits:  # the estimate sizes the next ones at once: a second would cost as much
                self._learn(contract_address, ops, estimate)
                break
            ops = ops[: max(1, len(ops) // 2)]  # the rest stay queued for the next transaction
        if dom.standard is TokenStandard.REWARDS:
            gas += RECEIVER_GAS * sum(
                1 for op in ops if int(op.to_address, 16) and self._code(chain, op.to_address)
            )
        record = sign_on_lane(session, chain, lane, account, contract.address, data, gas)
        submitted = {
            "status": "submitted",
            "relayer_tx_id": record.id,
            "tx_hash": record.tx_hash,
            "submitted_at": record.broadcast_at,
            # a platform-signed operation keeps the deadline its group was signed with
            "deadline": case(
                (OPERATION.c.signed_by == "external", OPERATION.c.deadline),
                else_=literal(deadline, BigInteger),
            ),
        }
        _set(session, ops, submitted)
        events.notify_changed(session, ops, "transaction.submitted")
        return record.raw

    def _modelled(self, contract: str, ops: list[Op], cap: int) -> list[int] | None:
        """The gas of the first 1, 2, … operations that fit under `cap` from the observed gas of their
        kinds (with headroom), or None while a kind of them has not been observed on this contract."""
        if len(ops) < MODEL_MIN_OPS:  # a few operations pay fixed costs (new holders, a fresh ref
            return None  # word) that the model, learned from large transactions, spreads thin
        gas, total = [], float(MODEL_BASE)
        for op in ops:
            per_op = self.gas_per_op.get((contract, _kind(op)))
            if per_op is None:
                return None
            total += per_op * MODEL_HEADROOM
            if total > cap:
                break
            gas.append(int(total))
        return gas or None

    def _learn(self, contract: str, ops: Sequence[Op], gas: int) -> None:
        """The gas per operation of a kind, from a transaction of that kind alone (its estimate or its
        receipt): the largest seen, a few operations paying fixed costs spread over them."""
        kinds = {_kind(op) for op in ops}
        if len(ops) >= MODEL_MIN_OPS and len(kinds) == 1:
            key = (contract, kinds.pop())
            self.gas_per_op[key] = max(self.gas_per_op.get(key, 0), gas / len(ops))

    def _groups(
        self, session: Session, dom: Domain, ops: list[Op]
    ) -> tuple[list[tuple[EncodedGroup, list[Op]]], int]:
        """One group per platform signer (signed now, with the deadline returned) and each
        signed-elsewhere operation alone; operations whose signer is gone fail here."""
        by_signer: dict[tuple[Any, ...], list[Op]] = {}
        for op in ops:
            key = (
                ("external", op.id)
                if op.signed_by == "external"
                else (op.signed_by, op.signer_owner_id, op.signer)
            )
            by_signer.setdefault(key, []).append(op)
        deadline = int(time.time()) + GROUP_LIFETIME
        groups = []
        for (kind, *_), members in by_signer.items():
            first = members[0]
            encoded = [
                encode_operation(
                    dom.standard,
                    op.from_address,
                    op.to_address,
                    op.amount,
                    bytes.fromhex(op.ref[2:]),
                    op.chain_token_id,
                )
                for op in members
            ]
            if kind == "external":
                assert first.deadline is not None and first.signature is not None
                signature, group_deadline = bytes.fromhex(first.signature[2:]), first.deadline
            else:
                private = self._key(session, first)
                if private is None:
                    self._fail(session, members, "signer_unavailable")
                    continue
                group_deadline = deadline
                signature = sign(encoded_digest(dom, first.signer, encoded, deadline), private)
            groups.append((EncodedGroup(first.signer, encoded, group_deadline, signature), members))
        return groups, deadline

    def _key(self, session: Session, op: Op) -> bytes | None:
        """The sealed key of the operation's platform signer, if it still is that signer's."""
        assert op.signer_owner_id is not None
        cache_key = (op.signer, op.signer_owner_id)
        if cache_key not in self.keys:
            sealed, context = None, ""
            if op.signed_by == "business":
                business = session.get(Business, op.signer_owner_id)
                if business is not None and business.signer_address == op.signer:
                    sealed, context = business.signer_key_sealed, signer_context(business.id)
            else:
                user = session.get(User, op.signer_owner_id)
                if user is not None and user.wallet_address == op.signer:
                    sealed, context = user.wallet_key_sealed, wallet_context(user.id)
            self.keys[cache_key] = self.runtime.keystore.open(sealed, context) if sealed else None
        return self.keys[cache_key]

    def _domain(self, session: Session, op: Op) -> Domain:
        if op.contract_address not in self.domains:
            token_type = session.get(TokenType, op.token_type_id)
            assert token_type is not None
            self.domains[op.contract_address] = domain_of(self.runtime.settings, token_type)
        return self.domains[op.contract_address]

    def _contract(self, chain: Chain, standard: TokenStandard, address: str) -> Contract:
        key = (chain.network.name, address)
        if key not in self.contracts:
            self.contracts[key] = token(chain, standard, address)
        return self.contracts[key]

    def _code(self, chain: Chain, address: str) -> bool:
        if address not in self.has_code:
            self.has_code[address] = chain.has_code(address)
        return self.has_code[address]

    def _fail(self, session: Session, ops: list[Op], code: str) -> None:
        failed = {"status": "failed", "error_code": code, "finished_at": utcnow()}
        _set(session, ops, failed)
        events.notify_changed(session, ops, "transaction.failed")

    # --- settling ---------------------------------------------------------------------------------

    def settle(self) -> tuple[bool, bool]:
        """Reads the receipts of our pending transactions (one JSON-RPC batch per network, outside
        any database transaction), then records each operation's outcome; re-sends what the node
        seems to have lost. Answers (whether any settled, whether any is still in flight)."""
        with self.runtime.sessions() as session:
            pending = session.execute(PENDING).all()
        progressed, waiting = False, False
        by_network: dict[str, list[Any]] = {}
        for row in pending:
            by_network.setdefault(row.network, []).append(row)
        for network, rows in by_network.items():
            chain, _ = self.chain(network)
            receipts = chain.rpc_many("eth_getTransactionReceipt", [[row.tx_hash] for row in rows])
            for row, raw in zip(rows, receipts, strict=True):
                if raw is not None:
                    progressed |= self._record(chain, row.id, Receipt.of(raw))
                    continue
                waiting = True
                if _age(row.broadcast_at) >= self.runtime.settings.relay_resend_after:
                    if self._recover(chain, row.id):
                        progressed = True
                    else:
                        self._maybe_resend(chain, row.id)
        return progressed, waiting

    def _recover(self, chain: Chain, tx_id: uuid.UUID) -> bool:
        """Settles a transaction the chain went past without mining it (see `recovery`); it may move
        the lane's nonce, so it holds the lane as sending does."""
        with lane_lease(self.runtime.engine), jobs.committed(self.runtime.sessions) as session:
            record = _lock_pending(session, tx_id)
            if record is None:
                return False
            first = session.scalar(select(Operation).where(Operation.relayer_tx_id == record.id).limit(1))
            contract = None
            if first is not None:
                standard = self._domain(session, first).standard
                contract = self._contract(chain, standard, record.contract_address)
            ran = recover(session, chain, contract, record, self.runtime.settings.relay_resend_after)
            if ran is None:
                return False
            log.warning("relay.nonce_passed", tx_id=str(tx_id), nonce=record.nonce, ran=len(ran))
            if ran:
                rows = [_outcome_row(op, outcome, NO_RECEIPT) for op, outcome in ran]
                _write_outcomes(session, rows, {"finished_at": utcnow()})
                for status, event_type in (("mined", "transaction.mined"), ("failed", "transaction.failed")):
                    changed = [op for (op, _), row in zip(ran, rows, strict=True) if row["status"] == status]
                    events.notify_changed(session, changed, event_type)
        return True

    def _maybe_resend(self, chain: Chain, tx_id: uuid.UUID) -> None:
        """No receipt yet: after a while the stored bytes are sent again (the node may have lost them);
        later the transaction is replaced with the same nonce and higher fees (it may be underpriced)."""
        settings, now = self.runtime.settings, utcnow()
        with jobs.committed(self.runtime.sessions) as session:
            record = _lock_pending(session, tx_id)
            if record is None or record.broadcast_at is None:
                return
            age = (now - record.broadcast_at).total_seconds()
            if age < settings.relay_resend_after:
                return
            newer = session.scalar(
                select(RelayerTransaction.id).where(
                    RelayerTransaction.lane_id == record.lane_id,
                    RelayerTransaction.nonce == record.nonce,
                    RelayerTransaction.created_at > record.created_at,
                )
            )
            if newer is not None:
                return  # a replacement carries this nonce now
            raw = record.raw
            if (now - record.created_at).total_seconds() >= settings.relay_replace_after:
                raw = self._replacement(session, chain, record) or raw
            record.broadcast_at = now
        log.info("relay.resend", tx_id=str(tx_id), replaced=raw != record.raw)
        broadcast(chain, raw)

    def _replacement(self, session: Session, chain: Chain, record: RelayerTransaction) -> bytes | None:
        """The same transaction with fees 25% higher within the network's cap, stored before it is sent;
        None when the fees are already at the cap (then the stored bytes go again)."""
        lane = session.get(Lane, record.lane_id)
        account = self.lanes.get(record.network, {}).get(lane.address) if lane else None
        if account is None:
            return None
        tx = TypedTransaction.from_bytes(HexBytes(record.raw)).as_dict()
        cap = chain.network.max_fee_gwei
        max_fee = int(tx["maxFeePerGas"] * FEE_BUMP) + 1
        if cap is not None:
            max_fee = min(max_fee, Web3.to_wei(cap, "gwei"))
        tip = min(int(tx["maxPriorityFeePerGas"] * FEE_BUMP) + 1, max_fee)
        if max_fee <= tx["maxFeePerGas"]:
            return None
        fields = {k: v for k, v in tx.items() if k not in ("v", "r", "s")}
        fields.update(maxFeePerGas=max_fee, maxPriorityFeePerGas=tip, to=Web3.to_checksum_address(tx["to"]))
        signed = account.sign_transaction(fields)
        session.add(
            RelayerTransaction(
                id=uuid.uuid4(),
                lane_id=record.lane_id,
                network=record.network,
                contract_address=record.contract_address,
                nonce=record.nonce,
                tx_hash=signed.hash.to_0x_hex(),
                raw=bytes(signed.raw_transaction),
                max_fee_per_gas=max_fee,
                max_priority_fee_per_gas=tip,
                status="pending",
                broadcast_at=utcnow(),
            )
        )
        return bytes(signed.raw_transaction)

    def _record(self, chain: Chain, tx_id: uuid.UUID, receipt: "Receipt") -> bool:
        with jobs.committed(self.runtime.sessions) as session:
            record = _lock_pending(session, tx_id)
            if record is None:
                return False  # another worker settled it
            # The transactions that shared its nonce (replaced by it, or it by them) carry the same
            # operations: whichever was mined settles them all.
            siblings = list(
                session.scalars(SIBLINGS, {"lane_id": record.lane_id, "nonce": record.nonce, "id": record.id})
            )
            for sibling in siblings:
                sibling.status, sibling.finished_at = "replaced", utcnow()
            carriers = [record.id, *(s.id for s in siblings)]
            ops = list(map(Settled._make, session.execute(SETTLING, {"carriers": carriers})))
            record.status = "mined" if receipt.status == 1 else "reverted"
            record.block_number, record.gas_used = receipt.block_number, receipt.gas_used
            record.finished_at = utcnow()
            metrics.add_gas_used(chain.network.name, receipt.gas_used)
            if not ops:
                return True
            if receipt.status != 1 and _out_of_gas(record, receipt):
                for kind in {_kind(op) for op in ops}:
                    self.gas_per_op.pop((record.contract_address, kind), None)
                queued = {"status": "queued", "relayer_tx_id": None, "tx_hash": None, "submitted_at": None}
                # nothing ran: queued again, estimated next time
                _set(session, ops, queued)
                return True
            if receipt.status == 1:
                self._learn(record.contract_address, ops, receipt.gas_used)
            dom = self._domain(session, ops[0])
            contract = self._contract(chain, dom.standard, record.contract_address)
            found = _outcomes(contract.address, receipt)
            now = utcnow()
            outcomes = []
            for op in ops:
                outcome = found.get((op.signer.lower(), op.ref))
                if outcome is not None and outcome.failure is Failure.REF_USED:
                    outcome = consumed(chain, contract, op.signer, op.ref) or outcome
                outcomes.append(_outcome_row(op, outcome, receipt))
            common = {
                "gas_used": receipt.gas_used // len(ops),
                "relayer_tx_id": record.id,
                "finished_at": now,
            }
            _write_outcomes(session, outcomes, common)
            for status, event_type in (("mined", "transaction.mined"), ("failed", "transaction.failed")):
                changed = [op for op, row in zip(ops, outcomes, strict=True) if row["status"] == status]
                ages = [(now - op.created_at).total_seconds() for op in changed]
                metrics.observe_operations(record.network, status, ages)
                events.notify_changed(session, changed, event_type)
        return True


def _needed_gas(chain: Chain, call: dict[str, Any], ops: Sequence[Op]) -> int:
    """The gas a transaction needs. `eth_estimateGas` searches it by running the transaction again and
    again (anvil: 245 ms for 909 mints, 0.9 s under load); mints free no storage, so no refund makes
    the gas they use less than the gas they need, and the one run of `eth_createAccessList` tells it
    (24 ms; the 63/64 a call keeps back is within `GAS_HEADROOM`). A node without it, or a call that
    fails there, is estimated."""
    if all(op.type == "mint" for op in ops):
        try:
            found = chain.rpc("eth_createAccessList", call, "latest")
            if "error" not in found:  # geth answers a revert in the result
                return int(found["gasUsed"], 16)
        except Exception:  # the estimate below tells a revert apart from a missing method
            log.debug("relay.access_list_unavailable")
    return int(chain.w3.eth.estimate_gas(call))  # type: ignore[arg-type]


def _queues(session: Session) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    row = session.execute(FIRST_QUEUE).first()
    while row is not None:
        found.append((row.network, row.contract_address))
        row = session.execute(NEXT_QUEUE, {"network": row.network, "contract": row.contract_address}).first()
    return found


def _lock_pending(session: Session, tx_id: uuid.UUID) -> RelayerTransaction | None:
    """The transaction, locked, while it is pending; None once settled or while another worker holds
    it (SKIP LOCKED: that worker is settling or re-sending it)."""
    return session.scalar(LOCK_PENDING, {"tx_id": tx_id})


def _kind(op: Op) -> Kind:
    """What a gas model is kept for: the operation's type and whether its group is its own."""
    return op.type, op.signed_by == "external"


def _age(moment: datetime | None) -> float:
    return float("inf") if moment is None else (utcnow() - moment).total_seconds()


def _out_of_gas(record: RelayerTransaction, receipt: "Receipt") -> bool:
    """Whether it reverted for lack of gas: with less than the 1/64 of its gas that a call keeps back
    (EIP-150) left, an inner call starved and the revert that followed is not the operations' doing."""
    limit = TypedTransaction.from_bytes(HexBytes(record.raw)).as_dict()["gas"]
    return bool(receipt.gas_used >= limit - limit // 64)


# The topics of the token's outcome logs, as a node's answers spell them (0x and lower-case hex).
EXECUTED = "0x" + keccak(b"OperationExecuted(bytes32,address)").hex()
FAILED = "0x" + keccak(b"OperationFailed(bytes32,address,uint8)").hex()


@dataclass(frozen=True)
class Receipt:
    """The parts of a raw receipt settling needs (web3's formatters cost more than the rest)."""

    status: int
    block_number: int
    gas_used: int
    tx_hash: str
    logs: list[dict[str, Any]]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "Receipt":
        logs = raw["logs"]
        if "transactionHash" not in raw:  # the embedded EVM's (snake_case, bytes): spelt as a node's
            logs = [
                {
                    "address": _hex(entry["address"]),
                    "topics": [_hex(t) for t in entry["topics"]],
                    "data": _hex(entry["data"]),
                    "logIndex": hex(as_int(field(entry, "logIndex"))),
                }
                for entry in logs
            ]
        return cls(
            as_int(field(raw, "status")),
            as_int(field(raw, "blockNumber")),
            as_int(field(raw, "gasUsed")),
            _hex(field(raw, "transactionHash")),
            logs,
        )


NO_RECEIPT = Receipt(1, 0, 0, "", [])  # an outcome read from the logs, in a transaction we did not record


def _outcomes(address: str, receipt: Receipt) -> dict[tuple[str, str], Outcome]:
    """`operations.outcomes` by (signer, ref), read straight from the logs' hex text (as a node spells
    it; `Receipt.of` spells the embedded EVM's so): the token's own logs only, without the generic ABI
    decoder or a bytes conversion per field (the hot path of settling thousands of operations)."""
    found = {}
    wanted, tx_hash = address.lower(), bytes.fromhex(receipt.tx_hash[2:])  # every log's transaction
    for entry in receipt.logs:
        topics = entry["topics"]
        if len(topics) != 3 or entry["address"].lower() != wanted:
            continue
        topic = topics[0].lower()
        if topic == EXECUTED:
            failure = Failure.NONE
        elif topic == FAILED:
            failure = Failure(int(entry["data"][-64:], 16))
        else:
            continue
        ref, signer = topics[1].lower(), "0x" + topics[2][-40:].lower()
        index = int(entry["logIndex"], 16)
        found[(signer, ref)] = Outcome(bytes.fromhex(ref[2:]), signer, failure, tx_hash, index)
    return found


def _hex(value: Any) -> str:
    """A raw answer's bytes as 0x and lower-case hex: a node's are text, the embedded EVM's bytes."""
    return value.lower() if isinstance(value, str) else "0x" + bytes(value).hex()


def _outcome_row(op: Op, outcome: Outcome | None, receipt: Receipt) -> dict[str, Any]:
    """What settling writes of one operation: its status and where the chain recorded its outcome."""
    if outcome is None:  # the transaction reverted: nothing ran
        return {
            "op_id": op.id,
            "status": "failed",
            "error_code": "execution_reverted",
            "tx_hash": receipt.tx_hash,
            "block_number": receipt.block_number,
            "log_index": None,
        }
    tx_hash = "0x" + outcome.tx_hash.hex()
    return {
        "op_id": op.id,
        "status": "mined" if outcome.failure is Failure.NONE else "failed",
        "error_code": None if outcome.failure is Failure.NONE else outcome.failure.name.lower(),
        "tx_hash": tx_hash,
        "block_number": receipt.block_number if tx_hash == receipt.tx_hash else None,
        "log_index": outcome.log_index,
    }


OUTCOME_COLUMNS = (
    ("op_id", Uuid),
    ("status", String),
    ("error_code", String),
    ("tx_hash", String),
    ("block_number", BigInteger),
    ("log_index", Integer),
)


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _set(session: Session, ops: Sequence[Op], values: dict[str, Any]) -> None:
    """Sets `values` on the operations, in one statement."""
    ids = among(OPERATION.c.id, session.get_bind().dialect.name)
    session.execute(update(OPERATION).where(ids).values(values), {"ids": [op.id for op in ops]})


def _write_outcomes(session: Session, rows: list[dict[str, Any]], shared: dict[str, Any]) -> None:
    """Every operation's own outcome plus what they share, in one statement: UPDATE … FROM unnest(one
    array per column) on Postgres, an executemany elsewhere (SQLite)."""
    postgres = _postgres(session)
    statement = _outcomes_statement(postgres, tuple(sorted(shared)))
    given = {f"shared_{name}": value for name, value in shared.items()}
    if postgres:
        arrays = {f"new_{name}": [row[name] for row in rows] for name, _ in OUTCOME_COLUMNS}
        session.execute(statement, {**arrays, **given})
    else:
        session.execute(statement, [{**{f"new_{k}": v for k, v in row.items()}, **given} for row in rows])


@functools.cache
def _outcomes_statement(postgres: bool, shared: tuple[str, ...]) -> Update:
    """`_write_outcomes`' statement, built once per dialect and shared columns (building it cost more
    than running it). Bound names differ from the columns' (SQLAlchemy reserves those for SET)."""
    names = [name for name, _ in OUTCOME_COLUMNS]
    same = {name: bindparam(f"shared_{name}", type_=OPERATION.c[name].type) for name in shared}
    if postgres:
        arrays = [bindparam(f"new_{name}", type_=ARRAY(kind)) for name, kind in OUTCOME_COLUMNS]
        given = func.unnest(*arrays).table_valued(*names).render_derived(name="outcome")
        # A column NULL in every row reaches Postgres as text: each is cast to its column's type.
        own: dict[str, Any] = {n: cast(given.c[n], OPERATION.c[n].type) for n in names[1:]}
        return update(OPERATION).where(OPERATION.c.id == given.c.op_id).values(**own, **same)
    own = {n: bindparam(f"new_{n}") for n in names[1:]}
    return update(OPERATION).where(OPERATION.c.id == bindparam("new_op_id")).values(**own, **same)


def start(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    """The pump in a thread of this process (`pers up` and `pers worker` alike)."""
    listener = threading.Thread(
        target=events.listen, args=(runtime.engine, stop), name="relay-listen", daemon=True
    )
    listener.start()
    pump = Pump(runtime)
    thread = threading.Thread(target=pump.run, args=(stop,), name="relay-pump", daemon=True)
    thread.start()
    return thread
