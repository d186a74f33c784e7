import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field

from backend.kit.api import Input, Schema


class AdminLogin(Input):
    auth_type: Literal["admin"]
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class UserLogin(Input):
    """Sign-In with Ethereum: an EIP-4361 message with a nonce from `/v1/auth/siwe/nonce`, and its
    `personal_sign` signature."""

    auth_type: Literal["user"]
    message: str = Field(min_length=1, max_length=8192)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


class BusinessLogin(Input):
    auth_type: Literal["business"]
    api_key: str = Field(min_length=1, max_length=128)


class ManagedUserLogin(Input):
    """A business opens a short session for one of its managed-wallet users (who has no wallet to sign
    SIWE with); the business's own credential (secret key or session) goes in the headers."""

    auth_type: Literal["managed_user"]
    user_id: uuid.UUID


TokenRequest = Annotated[
    AdminLogin | UserLogin | BusinessLogin | ManagedUserLogin, Field(discriminator="auth_type")
]


class RefreshRequest(Input):
    refresh_token: str = Field(min_length=1, max_length=128)


class TokenPair(Schema):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str
    subject_kind: str
    subject_id: uuid.UUID


class Me(Schema):
    kind: str
    subject_id: uuid.UUID | None
    tenant_id: uuid.UUID | None
    environment: str | None
    scopes: list[str]


class NonceOut(Schema):
    nonce: str
    expires_at: datetime
    chain_id: int
    domains: list[str]
    resources: list[str] = Field(description="The message must list these under Resources: (the tenant).")


class AdminCreate(Input):
    email: EmailStr
    role: Literal["TENANT_ADMIN", "AUDITOR"]
    name: str | None = Field(default=None, max_length=120)
    password: str | None = Field(default=None, min_length=12, max_length=256)


class AdminUpdate(Input):
    """A role change ends the admin's sessions."""

    name: str | None = Field(default=None, max_length=120)
    role: Literal["TENANT_ADMIN", "AUDITOR"] | None = None


class PasswordChange(Input):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=12, max_length=256)


class AdminOut(Schema):
    id: uuid.UUID
    email: str
    role: str
    name: str | None
    created_at: datetime


class AdminCreated(AdminOut):
    password: str | None = Field(default=None, description="Shown once, when the platform generated it.")
