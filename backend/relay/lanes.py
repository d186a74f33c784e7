"""Lanes: the relayer wallets that carry operations, one nonce sequence each, kept in Postgres.

A worker locks a lane row FOR UPDATE (SKIP LOCKED, so workers spread over the lanes), takes its next
nonce and stores the signed transaction in the same commit: no nonce is used twice and none is lost,
however many `pers worker` processes run."""

from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.chain.client import Chain, dev_account
from backend.chain.deploy import FACTORY, register_relayer
from backend.kit.db import unit_of_work, utcnow
from backend.kit.errors import ConfigError
from backend.relay.models import Lane, Operation, RelayerTransaction
from backend.runtime import Runtime
from backend.settings import NetworkConfig, Settings

DEV_LANE_BASE = 9  # development accounts 9, 8, ... (0 is the platform's relayer, 1-4 serve tests)


def lane_accounts(settings: Settings, network: NetworkConfig) -> list[LocalAccount]:
    if settings.relay_lane_keys:
        return [Account.from_key(k.get_secret_value()) for k in settings.relay_lane_keys]
    if not network.dev:
        raise ConfigError(f"network {network.name} needs PERS_RELAY_LANE_KEYS", code="missing_lane_keys")
    return [dev_account(DEV_LANE_BASE - i) for i in range(min(settings.relay_lanes, 5))]


def open_lanes(runtime: Runtime, chain: Chain) -> dict[str, LocalAccount]:
    """Registers the lanes with the platform's factory, makes their rows, and resyncs each nonce
    against the chain: the chain's count when nothing of ours is pending, never below what we stored."""
    network = chain.network.name
    accounts = lane_accounts(runtime.settings, chain.network)
    factory = runtime.platform(network).contracts[FACTORY]
    for account in accounts:
        register_relayer(chain, factory, account.address)
    for account in accounts:
        with unit_of_work(runtime.sessions) as session:
            lane = _lane_row(session, network, account.address)
            pending = session.scalar(
                select(func.count())
                .select_from(RelayerTransaction)
                .where(RelayerTransaction.lane_id == lane.id, RelayerTransaction.status == "pending")
            )
            on_chain = chain.w3.eth.get_transaction_count(account.address, "pending")
            lane.next_nonce = max(lane.next_nonce, on_chain) if pending else on_chain
    return {a.address: a for a in accounts}


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
