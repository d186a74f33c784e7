"""Token types: a credit is its own ERC-20 clone; rewards and statuses are ids in the tenant's ERC-1155."""

import uuid

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped, Uint256


class TokenType(Timestamped, Base):
    __tablename__ = "token_types"
    __table_args__ = (
        UniqueConstraint("tenant_id", "environment", "symbol"),
        UniqueConstraint("tenant_id", "environment", "chain_token_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(8))  # credit | reward | status
    name: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(16))
    decimals: Mapped[int] = mapped_column(Integer)
    metadata_uri: Mapped[str | None] = mapped_column(Text)
    max_supply: Mapped[int | None] = mapped_column(Uint256)
    status: Mapped[str] = mapped_column(String(8))  # pending | active | failed
    failure_reason: Mapped[str | None] = mapped_column(Text)
    contract_address: Mapped[str | None] = mapped_column(String(42))
    chain_token_id: Mapped[int | None] = mapped_column(Uint256)  # the ERC-1155 id of a reward or status
    tx_hash: Mapped[str | None] = mapped_column(String(66))
