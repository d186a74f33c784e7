"""Request and answer shapes of /v1/status-tiers and the users' status."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from backend.kit.api import Input, Schema
from backend.kit.db import UINT256_MAX
from backend.kit.types import Amount, Uint256Out

Name = Annotated[str, Field(min_length=1, max_length=120)]
Threshold = Annotated[int, Amount(1, UINT256_MAX, code="invalid_amount")]
Days = Annotated[int, Field(ge=1, le=36_500)]
GrantState = Literal["granting", "granted", "revoking", "revoked", "failed"]


class TierCreate(Input):
    """A tier: one unit of the status token for every user whose lifetime-earned credits (confirmed
    mints of the credit token, whatever they spent since) reach `threshold`."""

    name: Name
    status_token_id: uuid.UUID
    credit_token_id: uuid.UUID
    threshold: Threshold
    valid_for_days: Days | None = Field(
        default=None, description="The status is burnt this many days after it was granted; none: kept"
    )
    active: bool = Field(default=True, description="An inactive tier grants nothing new")


class TierUpdate(Input):
    """Changes apply to grants made from now on; statuses already held keep their expiry."""

    name: Name | None = None
    threshold: Threshold | None = None
    valid_for_days: Days | None = None
    active: bool | None = None


class TierOut(Schema):
    id: uuid.UUID
    name: str
    status_token_id: uuid.UUID
    credit_token_id: uuid.UUID
    threshold: Uint256Out
    valid_for_days: int | None
    active: bool
    created_at: datetime


class MemberStatus(Schema):
    """A user's status in a tier, following the operation that grants or revokes it."""

    tier_id: uuid.UUID
    user_id: uuid.UUID
    name: str
    status_token_id: uuid.UUID
    state: GrantState = Field(
        description="granting (the mint is on its way), granted, revoking (the burn is on its way), "
        "revoked, or failed (the mint failed: retried while the user still qualifies)"
    )
    lifetime_earned: Uint256Out = Field(description="The credit's confirmed mints to the user, ever")
    granted_at: datetime | None
    expires_at: datetime | None
    operation_id: uuid.UUID | None = Field(description="The grant's mint, or the revoke's burn")
    error_code: str | None = Field(description="Why the last grant or revoke could not go through")
