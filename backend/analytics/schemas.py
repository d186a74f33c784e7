import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from backend.kit.api import Schema
from backend.kit.types import Uint256Out

Interval = Literal["day", "week", "month"]


class Tokens(Schema):
    """Sums of the mined or confirmed operations' amounts, by type (decimal strings)."""

    issued: Uint256Out = 0
    burned: Uint256Out = 0
    transferred: Uint256Out = 0


class Figures(Schema):
    claims: int = 0
    completed: int = 0
    failed: int = 0
    unique_users: int = 0
    tokens: Tokens = Tokens()
    redeems: int = 0
    redemption_rate: float | None = None  # redeems / claims; None without claims
    gas_used: Uint256Out = 0


class Bucket(Figures):
    start: str  # the bucket's first day, YYYY-MM-DD (UTC)


class Share(Schema):
    """One group's claims: a partner business, a trigger type or a trigger source."""

    key: str | None
    claims: int
    completed: int


class BudgetUse(Schema):
    token_id: uuid.UUID
    issued: Uint256Out
    max_amount: Uint256Out
    used: float  # issued / maxAmount


class Analytics(Schema):
    from_: datetime = Field(alias="from")
    to: datetime
    interval: Interval
    totals: Figures
    series: list[Bucket]
    by_business: list[Share]
    by_trigger_type: list[Share]
    by_trigger_source: list[Share]
    budget: list[BudgetUse]  # a campaign's, per token unit; empty elsewhere
