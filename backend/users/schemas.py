import math
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, EmailStr, Field

from backend.kit.api import Input, Schema
from backend.kit.types import Address, JsonObject


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _storable(attributes: dict[str, Any]) -> dict[str, Any]:
    # 1e400 is valid JSON but parses to infinity (so does Python's NaN extension); Postgres refuses both.
    if not _finite(attributes):
        raise ValueError("numbers must be finite")
    return attributes


Attributes = Annotated[JsonObject, AfterValidator(_storable)]


class UserFind(Input):
    """Find-or-create: the wallet finds the user tenant-wide; a business's `externalId` and `email` find
    only users that business already knows (its own records), an admin's the tenant's."""

    wallet_address: Address | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    email: EmailStr | None = None
    name: str | None = Field(default=None, max_length=120)
    attributes: Attributes | None = None


class UserUpdate(Input):
    """What an admin (the tenant's record) or a business (its own record of the user) changes. `name`
    is the user's and an admin's to change, not a business's."""

    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    email: EmailStr | None = None
    name: str | None = Field(default=None, max_length=120)
    attributes: Attributes | None = None


class ProfileUpdate(Input):
    """What users change about themselves: their name and their own profile. Not the program's
    attributes (a business's or admin's record), nor their email: businesses find users by it, and an
    unverified, self-declared address would let someone claim another person's rewards."""

    name: str | None = Field(default=None, max_length=120)
    profile: Attributes | None = None


class UserLinkOut(Schema):
    business_id: uuid.UUID
    external_id: str | None
    email: str | None
    attributes: dict[str, Any]
    created_user: bool


class UserOut(Schema):
    """As the caller sees the user: a business sees its own record (external id, email, attributes),
    an admin or auditor the tenant's and every business's, the user their own."""

    id: uuid.UUID
    wallet_address: str
    managed_wallet: bool
    external_id: str | None
    email: str | None
    name: str | None
    attributes: dict[str, Any]
    profile: dict[str, Any] | None = Field(
        default=None, description="The user's own; not shown to businesses."
    )
    businesses: list[UserLinkOut] | None = Field(default=None, description="Admins and auditors only.")
    created_at: datetime
