import uuid
from datetime import datetime

from pydantic import EmailStr, Field

from backend.kit.api import Input, Schema

SLUG = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


class TenantCreate(Input):
    name: str = Field(min_length=1, max_length=120)
    slug: str = Field(pattern=SLUG, max_length=64)
    admin_email: EmailStr
    admin_password: str | None = Field(default=None, min_length=12, max_length=256)


class TenantUpdate(Input):
    name: str = Field(min_length=1, max_length=120)


class EnvironmentOut(Schema):
    environment: str
    network: str | None
    project_key: str
    status: str


class TenantOut(Schema):
    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime
    environments: list[EnvironmentOut]


class CreatedAdmin(Schema):
    id: uuid.UUID
    email: str
    role: str
    password: str | None = Field(default=None, description="Shown once, when the platform generated it.")


class TenantCreated(TenantOut):
    admin: CreatedAdmin


class CreditContract(Schema):
    token_id: uuid.UUID
    symbol: str
    address: str | None
    status: str


class ContractsOut(Schema):
    environment: str
    network: str | None
    chain_id: int | None
    status: str
    failure_reason: str | None
    factory: str | None
    rewards: str | None
    admin: str
    credits: list[CreditContract]
