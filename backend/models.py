"""Every table, imported in one place for Alembic and for `create_all` in tests."""

from backend.analytics.models import ClaimDay, OperationDay, RedeemDay, UserDay
from backend.auth.models import Admin, RefreshToken, SiweNonce
from backend.businesses.models import ApiKey, Business
from backend.campaigns.models import (
    Campaign,
    CampaignTag,
    Claim,
    ClaimOperation,
    Engagement,
    TokenUnit,
    Trigger,
    TriggerCounter,
    TriggerSource,
    UserEvent,
)
from backend.kit.db import Base
from backend.kit.outbox import OutboxMessage
from backend.redemptions.models import Redeem, Redemption
from backend.relay.models import Exchange, Lane, Operation, RelayerTransaction, RelayRequest
from backend.tenants.models import Tenant, TenantEnvironment
from backend.tiers.models import LifetimeEarning, StatusGrant, StatusTier
from backend.tokens.models import TokenType
from backend.users.models import User, UserLink
from backend.webhooks.models import Webhook, WebhookDelivery, WebhookEvent
from indexer.models import BalanceChange, BlockHeader, Cursor, Event, Holding, Supply, TenantContract

metadata = Base.metadata

__all__ = [
    "Admin",
    "ApiKey",
    "BalanceChange",
    "BlockHeader",
    "Business",
    "Campaign",
    "CampaignTag",
    "Claim",
    "ClaimDay",
    "ClaimOperation",
    "Cursor",
    "Engagement",
    "Event",
    "Exchange",
    "Holding",
    "Lane",
    "LifetimeEarning",
    "Operation",
    "OperationDay",
    "OutboxMessage",
    "Redeem",
    "RedeemDay",
    "Redemption",
    "RefreshToken",
    "RelayRequest",
    "RelayerTransaction",
    "SiweNonce",
    "StatusGrant",
    "StatusTier",
    "Supply",
    "Tenant",
    "TenantContract",
    "TenantEnvironment",
    "TokenType",
    "TokenUnit",
    "Trigger",
    "TriggerCounter",
    "TriggerSource",
    "User",
    "UserDay",
    "UserEvent",
    "UserLink",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
    "metadata",
]
