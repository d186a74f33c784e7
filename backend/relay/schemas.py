"""Request and answer shapes of /v1/transactions."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from backend.kit.api import Input, Schema
from backend.kit.db import UINT256_MAX
from backend.kit.types import Address, Amount, Uint256Out

OperationType = Literal["mint", "transfer", "burn"]
OperationStatus = Literal["queued", "submitted", "mined", "confirmed", "failed"]
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
    external: bool = Field(
        default=False,
        description="Seen on chain, not relayed by the platform (a wallet's own transfer): no ref, "
        "signer or createdAt",
    )
    token_id: uuid.UUID = Field(validation_alias="token_type_id")
    network: str
    contract_address: str
    chain_token_id: Uint256Out
    from_: str = Field(validation_alias="from_address", serialization_alias="from")
    to: str = Field(validation_alias="to_address")
    amount: Uint256Out
    ref: str | None = None
    signer: str | None = None
    business_id: uuid.UUID | None = None
    sender_user_id: uuid.UUID | None = None
    recipient_user_id: uuid.UUID | None = None
    error_code: str | None = Field(
        default=None, description="Why it failed: an API or chain code (e.g. insufficient_balance)"
    )
    tx_hash: str | None
    block_number: int | None
    log_index: int | None
    gas_used: int | None = None
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    confirmed_at: datetime | None = Field(
        default=None, description="When the indexer saw it at the confirmation depth"
    )


class BatchItem(Schema):
    index: int
    status: int = Field(description="202 when accepted, else the 4xx the item alone would get")
    transaction: TransactionOut | None = None
    error: dict[str, Any] | None = None


class BatchOut(Schema):
    accepted: int
    refused: int
    data: list[BatchItem]


def record(op: Any) -> dict[str, Any]:
    """An operation as `GET /v1/transactions/{id}` answers it, built directly (the hot path: every
    accepted operation and every status change), held equal to `TransactionOut` by the tests."""

    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    return {
        "id": str(op.id),
        "type": op.type,
        "status": op.status,
        "external": False,
        "tokenId": str(op.token_type_id),
        "network": op.network,
        "contractAddress": op.contract_address,
        "chainTokenId": str(op.chain_token_id),
        "from": op.from_address,
        "to": op.to_address,
        "amount": str(op.amount),
        "ref": op.ref,
        "signer": op.signer,
        "businessId": None if op.business_id is None else str(op.business_id),
        "senderUserId": None if op.sender_user_id is None else str(op.sender_user_id),
        "recipientUserId": None if op.recipient_user_id is None else str(op.recipient_user_id),
        "errorCode": op.error_code,
        "txHash": op.tx_hash,
        "blockNumber": op.block_number,
        "logIndex": op.log_index,
        "gasUsed": op.gas_used,
        "createdAt": when(op.created_at),
        "submittedAt": when(op.submitted_at),
        "finishedAt": when(op.finished_at),
        "confirmedAt": when(op.confirmed_at),
    }
