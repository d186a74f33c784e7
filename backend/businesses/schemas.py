import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from backend.auth.principal import API_SCOPES
from backend.kit.api import Input, Schema
from backend.kit.types import Address

Scope = Literal["users:read", "users:write", "tokens:read", "transactions:write", "events:write"]
assert set(Scope.__args__) == set(API_SCOPES)  # type: ignore[attr-defined]
BusinessStatus = Literal["active", "suspended"]


class BusinessCreate(Input):
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    signer_address: Address | None = Field(
        default=None, description="The business's own minter signer; omitted, the platform holds one for it."
    )


class BusinessUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2000)
    status: BusinessStatus | None = None
    signer_address: Address | None = None


class BusinessOut(Schema):
    id: uuid.UUID
    name: str
    description: str | None
    status: str
    signer_address: str
    custodial_signer: bool
    created_at: datetime


class ApiKeyCreate(Input):
    """A key of the caller's environment: a session signed in with the test project key manages test
    keys only (sign in with the live project key for live ones)."""

    name: str | None = Field(default=None, max_length=120)
    scopes: list[Scope] | None = Field(default=None, description="Default: every scope.")


class ApiKeyOut(Schema):
    id: uuid.UUID
    name: str | None
    prefix: str
    environment: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret key, shown this once.")
