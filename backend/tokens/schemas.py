import uuid
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from backend.kit.api import Input, Schema
from backend.kit.types import Amount, Uint256Out

MAX_CREDIT_SUPPLY = 2**248 - 1  # the credit contract keeps its cap in 248 bits
TokenKind = Literal["credit", "reward", "status"]
TokenStatus = Literal["pending", "active", "failed"]


METADATA_SCHEMES = ("https", "ipfs", "ar")


def _metadata_uri(uri: str) -> str:
    # Served to every holder's wallet and app: no script, local-file or plain-http URIs.
    parts = urlsplit(uri)
    if parts.scheme.lower() not in METADATA_SCHEMES or not (parts.netloc or parts.path.strip("/")):
        raise ValueError("must be an https://, ipfs:// or ar:// URI")
    return uri


MetadataUri = Annotated[str, Field(max_length=2048), AfterValidator(_metadata_uri)]


class TokenCreate(Input):
    kind: TokenKind
    name: str = Field(min_length=1, max_length=64)
    symbol: str = Field(pattern=r"^[A-Za-z0-9]{1,16}$")
    decimals: int = Field(default=0, ge=0, le=18)
    metadata_uri: MetadataUri | None = None
    max_supply: Annotated[int, Amount(1, MAX_CREDIT_SUPPLY, code="max_supply_out_of_range")] | None = Field(
        default=None, description="Credits only: the most that can ever be minted."
    )


class TokenUpdate(Input):
    metadata_uri: MetadataUri | None = None


class TokenOut(Schema):
    id: uuid.UUID
    kind: str
    name: str
    symbol: str
    decimals: int
    metadata_uri: str | None
    max_supply: Uint256Out | None
    status: str
    failure_reason: str | None = Field(
        description="Why the token failed, or why its pending activation keeps failing (then retried)"
    )
    attempts: int = Field(default=0, description="Failed attempts to put the token on chain so far")
    environment: str
    contract_address: str | None
    chain_token_id: Uint256Out | None = Field(description="The ERC-1155 id of a reward or status")
    created_at: datetime


class TokenDetail(TokenOut):
    """A token with its figures from the chain mirror (null until it is on chain)."""

    supply: Uint256Out | None = Field(description="Minted less burnt, as of `asOfBlock`")
    holder_count: int | None = Field(description="Holders with a non-zero balance")
    as_of_block: int | None
