"""Operations, the relayer transactions that carry them, and lanes (a relayer wallet's nonce).

An operation row is written in the caller's transaction; the pump claims queued rows, stores the
signed transaction with its hash and the lane's nonce in one commit, and only then broadcasts it."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped, Uint256, UtcDateTime

QUEUED = "status = 'queued' AND exchange_id IS NULL"  # what the operation pump sends
SETTLING_EVENTS = frozenset({"transaction.mined", "transaction.failed"})  # the events that settle operations


def _where(predicate: str) -> dict[str, Any]:
    """A partial index's predicate, on Postgres and SQLite alike."""
    return {"postgresql_where": text(predicate), "sqlite_where": text(predicate)}


class Operation(Timestamped, Base):
    __tablename__ = "operations"
    __table_args__ = (
        UniqueConstraint("contract_address", "signer", "ref"),  # a ref runs once per signer and token
        # Partial indexes: an operation's row is written three times (queued, submitted, its outcome)
        # and no update is HOT (its status is indexed), so each version is added to every index whose
        # predicate it meets. The pump's queue holds only queued rows (exchange legs have a pump of
        # their own), the confirmations' only mined ones, and the links to a transaction or a request
        # only rows that have one.
        Index(
            "ix_operations_queue",
            "network",
            "contract_address",
            "created_at",
            "id",
            **_where(QUEUED),
        ),
        Index("ix_operations_unconfirmed", "network", "block_number", **_where("status = 'mined'")),
        Index("ix_operations_relayer_tx_id", "relayer_tx_id", **_where("relayer_tx_id IS NOT NULL")),
        Index("ix_operations_request_id", "request_id", **_where("request_id IS NOT NULL")),
        Index("ix_operations_scope", "tenant_id", "environment", "created_at"),
        Index("ix_operations_exchange_id", "exchange_id", **_where("exchange_id IS NOT NULL")),
    )

    # No foreign keys to the tenant, business, token type or relayer transaction: checking them cost
    # more than the insert itself (migration 0014, docs/adr/0009); the parents are never deleted.
    tenant_id: Mapped[uuid.UUID]
    environment: Mapped[str] = mapped_column(String(8))
    business_id: Mapped[uuid.UUID | None]
    token_type_id: Mapped[uuid.UUID]
    network: Mapped[str] = mapped_column(String(64))
    contract_address: Mapped[str] = mapped_column(String(42))
    chain_token_id: Mapped[int] = mapped_column(Uint256, default=0)  # 0 for a credit
    type: Mapped[str] = mapped_column(String(8))  # mint | transfer | burn
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(Uint256)
    ref: Mapped[str] = mapped_column(String(66))
    signer: Mapped[str] = mapped_column(String(42))
    # Who signs: `business` or `user` (the platform, with their sealed key, at batching time) or
    # `external` (the signature came with the request, over a one-operation group).
    signed_by: Mapped[str] = mapped_column(String(8))
    signer_owner_id: Mapped[uuid.UUID | None]  # the business or user whose sealed key signs
    deadline: Mapped[int | None] = mapped_column(BigInteger)
    signature: Mapped[str | None] = mapped_column(String(132))
    recipient_user_id: Mapped[uuid.UUID | None]
    sender_user_id: Mapped[uuid.UUID | None]
    # queued | submitted | mined | confirmed (the indexer saw it at the confirmation depth) | failed
    status: Mapped[str] = mapped_column(String(10), default="queued")
    error_code: Mapped[str | None] = mapped_column(String(32))
    relayer_tx_id: Mapped[uuid.UUID | None]
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    log_index: Mapped[int | None] = mapped_column(Integer)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)  # the transaction's share for this operation
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    request_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("relay_requests.id"))
    # A leg of an atomic exchange (`Exchange`): sent by the exchange pump, never by the token pump.
    exchange_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("exchanges.id"))


class Exchange(Timestamped, Base):
    """A composite `redeem`: two operation rows (the cost burn and the reward mint, `exchange_id`
    pointing here) that the network's `ExchangeRouter` executes together or not at all (docs/adr/0002).
    Its transaction is a `RelayerTransaction` to the router; the legs take the exchange's outcome."""

    __tablename__ = "exchanges"
    __table_args__ = (Index("ix_exchanges_queue", "status", "network", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    network: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(66), unique=True)  # the exchange id signed into both legs
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued | submitted | mined | failed
    error_code: Mapped[str | None] = mapped_column(String(32))
    relayer_tx_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("relayer_transactions.id"))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RelayRequest(Timestamped, Base):
    """A token-moving request under an `Idempotency-Key`: its body's hash and the answer given."""

    __tablename__ = "relay_requests"
    __table_args__ = (UniqueConstraint("tenant_id", "environment", "caller", "idempotency_key"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    caller: Mapped[str] = mapped_column(String(80))  # kind:subject
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    answer: Mapped[str] = mapped_column(Text)  # the JSON answered the first time


class Lane(Timestamped, Base):
    """One relayer wallet on one network and the next nonce it will use; locked FOR UPDATE by the
    worker that signs with it, so no nonce is used twice whatever the number of workers."""

    __tablename__ = "relayer_lanes"
    __table_args__ = (UniqueConstraint("network", "address"),)

    network: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(42))
    next_nonce: Mapped[int] = mapped_column(BigInteger, default=0)


class RelayerTransaction(Timestamped, Base):
    """A signed transaction, stored before broadcast: re-sent from these bytes if the node loses it."""

    __tablename__ = "relayer_transactions"
    __table_args__ = (Index("ix_relayer_transactions_open", "status", "lane_id"),)

    lane_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("relayer_lanes.id"))
    network: Mapped[str] = mapped_column(String(64))
    contract_address: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    max_fee_per_gas: Mapped[int] = mapped_column(Uint256)
    max_priority_fee_per_gas: Mapped[int] = mapped_column(Uint256)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | mined | reverted
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    broadcast_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
