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
    """Find-or-create: the first given identifier (wallet, then external id, then email) finds the user."""

    wallet_address: Address | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    email: EmailStr | None = None
    name: str | None = Field(default=None, max_length=120)
    attributes: Attributes | None = None


class UserUpdate(Input):
    """What users change about themselves. Not their email: businesses find users by it, and an
    unverified, self-declared address would let someone claim another person's rewards."""

    name: str | None = Field(default=None, max_length=120)
    attributes: Attributes | None = None


class UserOut(Schema):
    id: uuid.UUID
    wallet_address: str
    managed_wallet: bool
    external_id: str | None
    email: str | None
    name: str | None
    attributes: dict[str, Any]
    created_at: datetime
