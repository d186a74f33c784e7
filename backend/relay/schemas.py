"""Request and answer shapes of /v1/transactions."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from backend.kit.api import Input, Schema
from backend.kit.db import UINT256_MAX
from backend.kit.types import Address, Amount, Uint256Out

OperationType = Literal["mint", "transfer", "burn"]
OperationStatus = Literal["queued", "submitted", "mined", "failed"]
MAX_BATCH = 1000
Positive = Annotated[int, Amount(1, UINT256_MAX)]
Deadline = Annotated[int, Amount(1, 2**63 - 1, code="invalid_deadline")]
Hex32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$")]
Signature = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$")]


class Movement(Input):
    """What moves: the token, who from (transfer, burn), who to (by address or user id), how much."""

    type: OperationType
    token_id: uuid.UUID
    from_: Address | None = Field(default=None, alias="from", description="The holder (transfer, burn)")
    to: Address | None = Field(default=None, description="The recipient (mint, transfer)")
    user_id: uuid.UUID | None = Field(default=None, description="The recipient by user id instead of `to`")
    amount: Positive
    business_id: uuid.UUID | None = Field(
        default=None, description="An admin's mint: the business whose custodial signer signs"
    )


class TransactionCreate(Movement):
    """A movement; a holder's transfer or burn (or a mint by a business with its own signer) carries
    the `ref`, `deadline` and `signature` over the group `prepare` answered."""

    ref: Hex32 | None = None
    deadline: Deadline | None = None
    signature: Signature | None = None


class BatchCreate(Input):
    operations: list[dict[str, Any]] = Field(description=f"At most {MAX_BATCH} transaction bodies")


class Prepared(Schema):
    typed_data: dict[str, Any] = Field(description="The eth_signTypedData_v4 document, to sign as is")
    signer: str
    ref: str
    deadline: Uint256Out


class TransactionOut(Schema):
    id: uuid.UUID
    type: str
    status: str
    token_id: uuid.UUID = Field(validation_alias="token_type_id")
    network: str
    contract_address: str
    chain_token_id: Uint256Out
    from_: str = Field(validation_alias="from_address", serialization_alias="from")
    to: str = Field(validation_alias="to_address")
    amount: Uint256Out
    ref: str
    signer: str
    business_id: uuid.UUID | None
    sender_user_id: uuid.UUID | None
    recipient_user_id: uuid.UUID | None
    error_code: str | None = Field(
        description="Why it failed: an API or chain code (e.g. insufficient_balance)"
    )
    tx_hash: str | None
    block_number: int | None
    log_index: int | None
    gas_used: int | None
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None


class BatchItem(Schema):
    index: int
    status: int = Field(description="202 when accepted, else the 4xx the item alone would get")
    transaction: TransactionOut | None = None
    error: dict[str, Any] | None = None


class BatchOut(Schema):
    accepted: int
    refused: int
    data: list[BatchItem]
