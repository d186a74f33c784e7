"""Daily rollups of the facts analytics reads, kept by `rollups` in the transaction that settles each
fact, so a figure over a range is a sum over at most a row per day and key, never a scan of claims.
A day is the UTC day the fact was created (its claim, operation or redeem). Absent keys (an operation
no business signed, a claim without a trigger source) are the nil UUID: key columns cannot be NULL."""

import uuid
from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Uint256

NONE = uuid.UUID(int=0)  # the key of "no business", "no campaign", "no trigger source", "everyone"
FIRST = date(1, 1, 1)  # the previous active day of a user's first one


class _Day:
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    day: Mapped[date] = mapped_column(Date)


def _key(*names: str) -> PrimaryKeyConstraint:
    """Scope and day first: every read is a range of days of one environment."""
    return PrimaryKeyConstraint("tenant_id", "environment", "day", *names)


class ClaimDay(_Day, Base):
    """Settled claims (completed or failed) per day, campaign, business and trigger."""

    __tablename__ = "analytics_claim_days"
    __table_args__ = (_key("campaign_id", "business_id", "trigger_type", "trigger_source_id"),)

    campaign_id: Mapped[uuid.UUID]
    business_id: Mapped[uuid.UUID]  # where it was made
    trigger_type: Mapped[str] = mapped_column(String(16))
    trigger_source_id: Mapped[uuid.UUID]
    completed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)


class UserDay(_Day, Base):
    """One row per user active (a settled claim) on a day, per view: the audience that sees the claim
    (everyone: the nil UUID; the business it was made at; the campaign's owner) and its subject (the
    environment: nil; the campaign; each token the campaign paid). Only `UserReturn` is read."""

    __tablename__ = "analytics_user_days"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "environment", "audience", "subject", "user_id", "day"),
    )

    audience: Mapped[uuid.UUID]
    subject: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID]


class UserReturn(_Day, Base):
    """How many users of a view were active on `day` with `previous` as their last active day before
    it (`FIRST` for none). A user is active in [a, b] iff exactly one of their days in it has its
    previous day before a, so the unique users of a range are the sum of `users` over its days with
    `previous < a`: a sum over at most (days by days) small rows, exact, whatever the range."""

    __tablename__ = "analytics_user_returns"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "environment", "audience", "subject", "day", "previous"),
    )

    audience: Mapped[uuid.UUID]
    subject: Mapped[uuid.UUID]
    previous: Mapped[date] = mapped_column(Date)
    users: Mapped[int] = mapped_column(Integer)


class OperationDay(_Day, Base):
    """Settled operations (mined, confirmed or failed) per day, token, signing business and the
    campaign whose claim they pay: amounts moved on chain by type, and the gas spent."""

    __tablename__ = "analytics_operation_days"
    __table_args__ = (_key("token_type_id", "business_id", "campaign_id"),)

    token_type_id: Mapped[uuid.UUID]
    business_id: Mapped[uuid.UUID]
    campaign_id: Mapped[uuid.UUID]
    issued: Mapped[int] = mapped_column(Uint256)
    burned: Mapped[int] = mapped_column(Uint256)
    transferred: Mapped[int] = mapped_column(Uint256)
    gas_used: Mapped[int] = mapped_column(BigInteger)


class RedeemDay(_Day, Base):
    """Settled redeems (completed or failed) per day and offer."""

    __tablename__ = "analytics_redeem_days"
    __table_args__ = (_key("redemption_id"),)

    redemption_id: Mapped[uuid.UUID]
    redeems: Mapped[int] = mapped_column(Integer)
