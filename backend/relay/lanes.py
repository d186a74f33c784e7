"""Lanes: one nonce sequence per sending wallet and network, kept in Postgres. The relay's wallets
carry operations; the platform's relayer sends platform transactions.

A worker locks a lane row FOR UPDATE (the pump with SKIP LOCKED, so workers spread over its lanes),
takes its next nonce and stores the signed transaction in the same commit: no nonce is used twice and
none is lost, however many `pers worker` processes run on however many machines."""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3.types import TxParams

from backend.chain.client import Chain, dev_account
from backend.chain.deploy import register_relayer
from backend.kit.db import unit_of_work, utcnow
from backend.kit.errors import ConfigError
from backend.relay.models import Lane, Operation, RelayerTransaction
from backend.settings import NetworkConfig, Settings

log = structlog.get_logger()
NO_CONTRACT = "0x" + "00" * 20  # a deployment's `to`

DEV_LANE_BASE = 9  # development accounts 9, 8, ... (0 is the platform's relayer, 1-4 serve tests)


def lane_accounts(settings: Settings, network: NetworkConfig) -> list[LocalAccount]:
    if settings.relay_lane_keys:
        return [Account.from_key(k.get_secret_value()) for k in settings.relay_lane_keys]
    if not network.dev:
        raise ConfigError(f"network {network.name} needs PERS_RELAY_LANE_KEYS", code="missing_lane_keys")
    return [dev_account(DEV_LANE_BASE - i) for i in range(min(settings.relay_lanes, 5))]


def open_lanes(
    settings: Settings, sessions: sessionmaker[Session], chain: Chain, factory: str
) -> dict[str, LocalAccount]:
    """Registers the relay's lanes with the platform's factory, makes their rows and resyncs each nonce."""
    accounts = lane_accounts(settings, chain.network)
    for account in accounts:
        register_relayer(chain, factory, account.address)
    for account in accounts:
        with unit_of_work(sessions) as session:
            _resync(session, chain, _lane_row(session, chain.network.name, account.address))
    return {a.address: a for a in accounts}


def _resync(session: Session, chain: Chain, lane: Lane) -> None:
    """The lane's nonce against the chain: the chain's count when nothing of ours is pending (someone
    else may have used the wallet), never below what we stored while something is."""
    pending = session.scalar(
        select(func.count())
        .select_from(RelayerTransaction)
        .where(RelayerTransaction.lane_id == lane.id, RelayerTransaction.status == "pending")
    )
    on_chain = chain.w3.eth.get_transaction_count(chain.w3.to_checksum_address(lane.address), "pending")
    lane.next_nonce = max(lane.next_nonce, on_chain) if pending else on_chain


@dataclass
class LaneNonces:
    """The platform relayer's transactions (deployments, tenant contracts and credit tokens, relayer
    registration, admin top-ups) on its lane: the row is locked, its nonce taken and the signed
    transaction stored before broadcast,
    as the pump does with operations. The pump settles them with its own, and sends their stored bytes
    again if the node loses them; a nonce someone else used is recovered the same way."""

    sessions: sessionmaker[Session]
    # SQLite has no row locks, and serves one process: there, one lease at a time is the row lock.
    _leasing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def broadcast(self, chain: Chain, sender: LocalAccount, tx: TxParams) -> HexBytes:
        with self._leasing, unit_of_work(self.sessions) as session:
            lane = _lane_row(session, chain.network.name, sender.address)
            _resync(session, chain, lane)
            signed = sender.sign_transaction({**tx, "nonce": lane.next_nonce})  # type: ignore[dict-item]
            session.add(
                RelayerTransaction(
                    id=uuid.uuid4(),
                    lane_id=lane.id,
                    network=lane.network,
                    contract_address=tx.get("to") or NO_CONTRACT,
                    nonce=lane.next_nonce,
                    tx_hash=signed.hash.to_0x_hex(),
                    raw=bytes(signed.raw_transaction),
                    max_fee_per_gas=int(tx["maxFeePerGas"]),
                    max_priority_fee_per_gas=int(tx["maxPriorityFeePerGas"]),
                    status="pending",
                    broadcast_at=utcnow(),
                )
            )
            lane.next_nonce += 1
        broadcast(chain, bytes(signed.raw_transaction))
        return signed.hash


# SQLite has no row locks and serves one process: there, the process's pumps (operations, exchanges)
# take a lane and its nonce one at a time.
_sqlite_lease = threading.Lock()


@contextmanager
def lane_lease(engine: Engine) -> Iterator[None]:
    """Held around a pump's unit of work that locks a lane, takes its nonce and commits."""
    if engine.dialect.name != "sqlite":
        yield
        return
    with _sqlite_lease:
        yield


def sign_on_lane(
    session: Session, chain: Chain, lane: Lane, account: LocalAccount, to: str, data: str, gas: int
) -> RelayerTransaction:
    """An EIP-1559 transaction to `to` with the lane's next nonce, signed and stored (raw bytes and hash)
    in the caller's unit of work, the lane advanced: the caller commits, and only then broadcasts."""
    max_fee, tip = chain.fees()
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain.network.chain_id,
        "nonce": lane.next_nonce,
        "to": to,
        "data": data,
        "gas": min(gas, chain.network.tx_gas_cap),
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
        "value": 0,
    }
    signed = account.sign_transaction(tx)
    record = RelayerTransaction(
        id=uuid.uuid4(),
        lane_id=lane.id,
        network=lane.network,
        contract_address=to,
        nonce=lane.next_nonce,
        tx_hash=signed.hash.to_0x_hex(),
        raw=bytes(signed.raw_transaction),
        max_fee_per_gas=int(max_fee),
        max_priority_fee_per_gas=int(tip),
        status="pending",
        broadcast_at=utcnow(),
    )
    session.add(record)
    session.flush()  # the operations point at it
    lane.next_nonce += 1
    return record


def broadcast(chain: Chain, raw: bytes) -> None:
    """Sends stored bytes; a failure is left to settling (already known, nonce too low: it ran; the
    node down: sent again later)."""
    try:
        chain.w3.eth.send_raw_transaction(raw)
    except Exception as exc:
        log.info("relay.broadcast_failed", error=str(exc)[:200])


def _lane_row(session: Session, network: str, address: str) -> Lane:
    query = select(Lane).where(Lane.network == network, Lane.address == address).with_for_update()
    lane = session.scalar(query)
    if lane is None:
        try:
            with session.begin_nested():
                session.add(Lane(network=network, address=address, next_nonce=0))
        except IntegrityError:  # another worker made it first
            pass
        lane = session.scalar(query)
        assert lane is not None
    return lane


@dataclass(frozen=True)
class LaneStatus:
    address: str
    next_nonce: int
    pending_transactions: int


def lanes(session: Session, network: str) -> list[LaneStatus]:
    """The network's lanes: address, the next nonce we will use, transactions sent and not yet settled."""
    pending = (
        select(RelayerTransaction.lane_id, func.count().label("n"))
        .where(RelayerTransaction.status == "pending")
        .group_by(RelayerTransaction.lane_id)
        .subquery()
    )
    rows = session.execute(
        select(Lane.address, Lane.next_nonce, pending.c.n)
        .outerjoin(pending, pending.c.lane_id == Lane.id)
        .where(Lane.network == network)
        .order_by(Lane.address)
    )
    return [LaneStatus(address, nonce, n or 0) for address, nonce, n in rows]


def queue_depth(session: Session) -> int:
    """Operations accepted and not yet sent."""
    return session.scalar(select(func.count()).where(Operation.status == "queued")) or 0


def oldest_queued_age(session: Session) -> float | None:
    """Seconds the oldest queued operation has waited, or None when none waits."""
    oldest = session.scalar(select(func.min(Operation.created_at)).where(Operation.status == "queued"))
    if oldest is None:
        return None
    return max(0.0, (utcnow() - oldest).total_seconds())
