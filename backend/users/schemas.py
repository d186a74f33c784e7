import uuid
from datetime import datetime
from typing import Any

from pydantic import EmailStr, Field

from backend.kit.api import Input, Schema
from backend.kit.types import Address


class UserFind(Input):
    """Find-or-create: the first given identifier (wallet, then external id, then email) finds the user."""

    wallet_address: Address | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    email: EmailStr | None = None
    name: str | None = Field(default=None, max_length=120)
    attributes: dict[str, Any] | None = None


class UserUpdate(Input):
    name: str | None = Field(default=None, max_length=120)
    email: EmailStr | None = None
    attributes: dict[str, Any] | None = None


class UserOut(Schema):
    id: uuid.UUID
    wallet_address: str
    managed_wallet: bool
    external_id: str | None
    email: str | None
    name: str | None
    attributes: dict[str, Any]
    created_at: datetime
