import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from backend.kit.api import Input, Schema

# What the platform emits (SPEC.md §5): the relay, the indexer, claims, redemptions and status tiers.
EVENT_TYPES = (
    "transaction.submitted",
    "transaction.mined",
    "transaction.confirmed",
    "transaction.failed",
    "relayer.low_balance",
    "claim.completed",
    "claim.failed",
    "campaign.budget_exhausted",
    "redeem.completed",
    "redeem.failed",
    "status.granted",
    "status.revoked",
)
TEST_EVENT = "webhook.test"  # sent by POST /v1/webhooks/{id}/test only, to that subscription alone


class WebhookCreate(Input):
    url: str = Field(min_length=1, max_length=2048, description="http(s) receiver; https and public in live")
    event_types: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES))
    description: str | None = Field(default=None, max_length=256)


class WebhookOut(Schema):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None
    environment: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret, shown this once: keep it to verify deliveries")


class AttemptOut(Schema):
    at: datetime
    status_code: int | None
    error: str | None


class DeliveryOut(Schema):
    id: uuid.UUID
    event_id: uuid.UUID = Field(description="The `id` the receiver gets, the same on every attempt")
    event_type: str
    status: str = Field(description="pending (retried with backoff), delivered, or failed (gave up)")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    history: list[AttemptOut]

    @classmethod
    def of(cls, delivery: Any, event_type: str) -> "DeliveryOut":
        fields = {name: getattr(delivery, name) for name in cls.model_fields if name != "event_type"}
        return cls.model_validate({**fields, "event_type": event_type})
