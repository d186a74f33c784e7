"""The chain mirror's tables. Rows are keyed by chain id; addresses are lowercase hex, hashes 0x-hex.

Everything above the cursor's common ancestor can be reverted: events, balance changes and contracts
carry their block number, so a reorg deletes them and undoes their deltas on holdings and supplies."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Dialect,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Uint256, UtcDateTime


class Int257(TypeDecorator[int]):
    """A signed amount change (-(2^256-1) to 2^256-1): NUMERIC(79, 0) on Postgres, decimal text on SQLite."""

    impl = String(80)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(79, 0))
        return dialect.type_descriptor(String(80))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return Decimal(value) if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


HOLDINGS_FILLFACTOR = 70
OUTCOMES = text("name IN ('OperationExecuted', 'OperationFailed')")


class Cursor(Base):
    """The last block of a network written to the mirror (with everything up to it)."""

    __tablename__ = "mirror_cursors"

    network: Mapped[str] = mapped_column(String(64), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)  # -1: nothing indexed yet
    block_hash: Mapped[str | None] = mapped_column(String(66))
    head_number: Mapped[int] = mapped_column(BigInteger)  # the node's head when last written (lag)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class BlockHeader(Base):
    """Headers of the unconfirmed window: a parent-hash mismatch reveals a reorg."""

    __tablename__ = "mirror_blocks"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))
    parent_hash: Mapped[str] = mapped_column(String(66))


class TenantContract(Base):
    """A tenant contract created through the platform's factory by the platform's deployer."""

    __tablename__ = "mirror_contracts"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    tenant_key: Mapped[str] = mapped_column(String(66), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # credit | rewards
    block_number: Mapped[int] = mapped_column(BigInteger)  # created in this block


class Event(Base):
    """One log of a tenant contract (or the factory's creation events), decoded where its layout is
    known; `data` holds the rest of the decoded fields, or the raw topics and data of an unknown log.
    A transfer relayed by the platform carries the `signer` and `ref` of the operation that moved it;
    one without them was made on chain by a wallet (external)."""

    __tablename__ = "mirror_events"
    __table_args__ = (
        # The natural key (chain id, block hash, log index) led by the block number: rows arrive in
        # block order, so the key's index grows at its right edge, and a reorg deletes by its prefix.
        PrimaryKeyConstraint("chain_id", "block_number", "block_hash", "log_index"),
        Index("ix_mirror_events_contract", "chain_id", "contract", "block_number", "log_index"),
        # Operations are joined to their outcome events only; transfers' copies of (signer, ref) stay out.
        Index(
            "ix_mirror_events_outcome",
            "chain_id",
            "signer",
            "ref",
            postgresql_where=OUTCOMES,
            sqlite_where=OUTCOMES,
        ),
    )

    chain_id: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    block_number: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))
    contract: Mapped[str] = mapped_column(String(42))
    name: Mapped[str] = mapped_column(String(32))  # the event's name, `unknown` when not decoded
    operator: Mapped[str | None] = mapped_column(String(42))
    from_address: Mapped[str | None] = mapped_column(String(42))
    to_address: Mapped[str | None] = mapped_column(String(42))
    token_id: Mapped[int | None] = mapped_column(Uint256)
    amount: Mapped[int | None] = mapped_column(Uint256)
    signer: Mapped[str | None] = mapped_column(String(42))
    ref: Mapped[str | None] = mapped_column(String(66))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class BalanceChange(Base):
    """One side of a movement: `holder`'s balance of (contract, token id) changed by `delta`."""

    __tablename__ = "mirror_balance_changes"
    __table_args__ = (
        PrimaryKeyConstraint("chain_id", "block_number", "block_hash", "log_index", "position"),
    )

    chain_id: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # 2 * batch item + (0 from, 1 to)
    block_number: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(42))
    token_id: Mapped[int] = mapped_column(Uint256)  # 0 on an ERC-20
    holder: Mapped[str] = mapped_column(String(42))
    delta: Mapped[int] = mapped_column(Int257)


class Holding(Base):
    """A holder's balance of one token as of the cursor; a row at zero stays (it held once)."""

    __tablename__ = "mirror_holdings"
    __table_args__ = (
        Index("ix_mirror_holdings_holder", "chain_id", "holder"),
        # Room on each page for the next version of its rows: a chunk's update of a holding is then
        # HOT (its amount is in no index) and writes no index entry.
        {"postgresql_with": {"fillfactor": HOLDINGS_FILLFACTOR}},
    )

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    token_id: Mapped[int] = mapped_column(Uint256, primary_key=True)
    holder: Mapped[str] = mapped_column(String(42), primary_key=True)
    amount: Mapped[int] = mapped_column(Uint256)


class Supply(Base):
    """A token's total supply (mints less burns) and how many holders have a non-zero balance."""

    __tablename__ = "mirror_supplies"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    token_id: Mapped[int] = mapped_column(Uint256, primary_key=True)
    supply: Mapped[int] = mapped_column(Uint256)
    holders: Mapped[int] = mapped_column(BigInteger)
