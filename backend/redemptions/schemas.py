"""Request and answer shapes of /v1/redemptions."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from backend.kit.api import Input, Schema
from backend.kit.types import Uint256Out
from backend.relay.schemas import Deadline, Hex32, Positive, Prepared, Signature

RedemptionKind = Literal["exchange", "catalog"]
RedeemStatus = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED"]
Count = Annotated[int, Field(ge=1, le=2**31 - 1)]
Stock = Annotated[int, Field(ge=0, le=2**31 - 1)]
Name = Annotated[str, Field(min_length=1, max_length=120)]
Description = Annotated[str, Field(max_length=4000)]


class RedemptionCreate(Input):
    """An offer. `exchange`: burn `costAmount` of the cost token and mint `rewardAmount` of the reward
    token in one transaction, signed by `businessId`'s custodial signer. `catalog`: burn the cost; the
    partner `businessId` then fulfils the item."""

    kind: RedemptionKind
    name: Name
    description: Description | None = None
    business_id: uuid.UUID
    cost_token_id: uuid.UUID
    cost_amount: Positive
    reward_token_id: uuid.UUID | None = None
    reward_amount: Positive | None = None
    required_status_token_id: uuid.UUID | None = Field(
        default=None, description="A status token the user must hold to redeem"
    )
    stock: Stock | None = Field(default=None, description="How many redeems there are; none: unlimited")
    per_user_limit: Count | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    active: bool = True


class RedemptionUpdate(Input):
    name: Name | None = None
    description: Description | None = None
    stock: Stock | None = Field(default=None, description="A new total; what was taken stays taken")
    per_user_limit: Count | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    active: bool | None = None


class RedemptionOut(Schema):
    id: uuid.UUID
    kind: str
    name: str
    description: str | None
    business_id: uuid.UUID
    cost_token_id: uuid.UUID
    cost_amount: Uint256Out
    reward_token_id: uuid.UUID | None
    reward_amount: Uint256Out | None
    required_status_token_id: uuid.UUID | None
    stock: int | None
    stock_remaining: int | None
    per_user_limit: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    active: bool
    created_at: datetime


class RedeemPrepare(Input):
    redemption_id: uuid.UUID


class RedeemCreate(Input):
    """A managed wallet's redeem names the offer alone; an own wallet's carries the signature over the
    burn that `POST /v1/redemptions/redeems/prepare` answered, with its `ref`, `deadline` (and, for an
    exchange, `exchangeRef`)."""

    redemption_id: uuid.UUID
    ref: Hex32 | None = None
    deadline: Deadline | None = None
    signature: Signature | None = None
    exchange_ref: Hex32 | None = None


class PreparedRedeem(Prepared):
    exchange_ref: str | None = Field(description="An exchange's id, signed into the burn leg")


class RedeemOut(Schema):
    id: uuid.UUID
    redemption_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    error_code: str | None
    burn_operation_id: uuid.UUID
    mint_operation_id: uuid.UUID | None
    exchange_id: uuid.UUID | None
    created_at: datetime
    finished_at: datetime | None
    fulfilled_at: datetime | None
