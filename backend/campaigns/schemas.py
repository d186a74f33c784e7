"""Request and answer shapes of /v1/campaigns, /v1/trigger-sources and /v1/events."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from backend.kit.api import Input, Schema
from backend.kit.db import UINT256_MAX
from backend.kit.types import Address, Amount, JsonObject, Uint256Out

CampaignStatus = Literal["draft", "active", "paused", "ended"]
TriggerType = Literal["api_event", "qr_code", "manual"]
Operator = Literal["equals", "in", "gte", "lte", "between"]
ClaimStatus = Literal["pending", "completed", "failed"]
MAX_EVENT_BATCH = 1000
Positive = Annotated[int, Amount(1, UINT256_MAX)]
Tag = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Limit = Annotated[int, Field(ge=1, le=1_000_000)]


def _web_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("https", "http") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return url


WebUrl = Annotated[str, Field(max_length=2048), AfterValidator(_web_url)]


class CampaignCreate(Input):
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=4000)
    business_id: uuid.UUID | None = Field(
        default=None, description="The owner, whose signer pays the claims (a business creates its own)"
    )
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    image_url: WebUrl | None = None
    external_url: WebUrl | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=20)


class CampaignUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=4000)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    image_url: WebUrl | None = None
    external_url: WebUrl | None = None


class TagsPut(Input):
    tags: list[Tag] = Field(max_length=20)


class TokenUnitCreate(Input):
    token_id: uuid.UUID
    amount: Positive = Field(description="What one claim pays")
    max_amount: Positive = Field(description="The most the campaign ever pays of this token")


class TokenUnitOut(Schema):
    id: uuid.UUID
    token_id: uuid.UUID = Field(validation_alias="token_type_id")
    amount: Uint256Out
    max_amount: Uint256Out
    issued: Uint256Out


class CampaignOut(Schema):
    id: uuid.UUID
    name: str
    description: str | None
    business_id: uuid.UUID
    status: str
    starts_at: datetime | None
    ends_at: datetime | None
    image_url: str | None
    external_url: str | None
    tags: list[str]
    token_units: list[TokenUnitOut]
    created_at: datetime


class Condition(Input):
    property: str = Field(min_length=1, max_length=120)
    operator: Operator
    value: Any


class TriggerCreate(Input):
    type: TriggerType
    event_name: str | None = Field(default=None, min_length=1, max_length=120)
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    max_per_user: Limit | None = None
    max_per_day: Limit | None = Field(default=None, description="Per user and UTC day")
    min_cooldown_seconds: Limit | None = None
    completion_threshold: int = Field(default=1, ge=1, le=10_000, description="The Nth matching event pays")


class TriggerOut(Schema):
    id: uuid.UUID
    campaign_id: uuid.UUID
    type: str
    event_name: str | None
    conditions: list[dict[str, Any]]
    max_per_user: int | None
    max_per_day: int | None
    min_cooldown_seconds: int | None
    completion_threshold: int
    created_at: datetime


class TriggerSourceCreate(Input):
    trigger_id: uuid.UUID
    name: str = Field(min_length=1, max_length=120)
    business_id: uuid.UUID | None = Field(default=None, description="The venue (a business names itself)")
    payload_seconds: int = Field(default=300, ge=10, le=86_400, description="How long a QR payload lasts")


class TriggerSourceOut(Schema):
    id: uuid.UUID
    trigger_id: uuid.UUID
    business_id: uuid.UUID | None
    type: str
    name: str
    payload_seconds: int
    created_at: datetime


class QrPayload(Schema):
    payload: str = Field(description="Put in the QR code; a claim by `triggerSourceId` sends it back")
    expires_at: datetime


class EngagementCreate(Input):
    business_ids: list[uuid.UUID] = Field(min_length=1, max_length=50, description="The partners invited")
    max_per_business: Limit | None = Field(default=None, description="Claims at each partner, in all")
    max_per_day: Limit | None = Field(default=None, description="Claims at each partner per UTC day")


class EngagementUpdate(Input):
    status: Literal["accepted", "rejected"]


class EngagementOut(Schema):
    id: uuid.UUID
    campaign_id: uuid.UUID
    business_id: uuid.UUID
    status: str
    max_per_business: int | None
    max_per_day: int | None
    claims: int = Field(description="Claims made at this partner so far")
    created_at: datetime


class UserRef(Input):
    """Whom a claim or event is for: exactly one of the three (a user's own session needs none)."""

    user_id: uuid.UUID | None = None
    wallet_address: Address | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=128)


class ClaimCreate(UserRef):
    campaign_id: uuid.UUID | None = None
    trigger_id: uuid.UUID | None = Field(
        default=None, description="With `campaignId`: which manual trigger (when it has several)"
    )
    trigger_source_id: uuid.UUID | None = None
    payload: str | None = Field(default=None, max_length=512, description="The QR payload of the source")
    business_id: uuid.UUID | None = Field(default=None, description="Where the claim is made")


class ClaimOut(Schema):
    id: uuid.UUID
    campaign_id: uuid.UUID
    trigger_id: uuid.UUID
    trigger_source_id: uuid.UUID | None
    event_id: uuid.UUID | None
    user_id: uuid.UUID
    business_id: uuid.UUID
    claimed_by: str
    claimed_by_id: uuid.UUID | None
    status: str
    operation_ids: list[str]
    created_at: datetime
    finished_at: datetime | None


class EventCreate(UserRef):
    id: str = Field(min_length=1, max_length=128, description="Your id: an event is processed once")
    name: str = Field(min_length=1, max_length=120)
    properties: JsonObject = Field(default_factory=dict)


class EventBatch(Input):
    events: list[dict[str, Any]] = Field(description=f"At most {MAX_EVENT_BATCH} events")


class TriggerOutcome(Schema):
    trigger_id: uuid.UUID
    campaign_id: uuid.UUID
    outcome: Literal["claimed", "progress", "refused"]
    claim_id: uuid.UUID | None = None
    progress: int | None = None
    code: str | None = None


class EventOut(Schema):
    id: str
    event_id: uuid.UUID
    name: str
    user_id: uuid.UUID
    results: list[TriggerOutcome]
    created_at: datetime


class EventBatchItem(Schema):
    index: int
    status: int = Field(description="202 processed (or a repeat of a processed id); 4xx refused")
    event: EventOut | None
    error: dict[str, Any] | None = None


class EventBatchOut(Schema):
    accepted: int
    refused: int
    data: list[EventBatchItem]
