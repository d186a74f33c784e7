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


class _Attributes:
    def __init__(self, op: Any) -> None:
        self.op = op

    def __getitem__(self, name: str) -> Any:
        return getattr(self.op, name)


def record(op: Any) -> dict[str, Any]:
    """An operation as `GET /v1/transactions/{id}` answers it, built directly (the hot path: every
    accepted operation and every status change), held equal to `TransactionOut` by the tests. Read from
    the instance's dict (the ORM's attribute access was half of it), or through the ORM when a column
    is not loaded."""
    try:
        return _record(vars(op))
    except KeyError:
        return _record(_Attributes(op))


def _record(row: Any) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "id": str(row["id"]),
        "type": row["type"],
        "status": row["status"],
        "external": False,
        "tokenId": str(row["token_type_id"]),
        "network": row["network"],
        "contractAddress": row["contract_address"],
        "chainTokenId": str(row["chain_token_id"]),
        "from": row["from_address"],
        "to": row["to_address"],
        "amount": str(row["amount"]),
        "ref": row["ref"],
        "signer": row["signer"],
        "businessId": text(row["business_id"]),
        "senderUserId": text(row["sender_user_id"]),
        "recipientUserId": text(row["recipient_user_id"]),
        "errorCode": row["error_code"],
        "txHash": row["tx_hash"],
        "blockNumber": row["block_number"],
        "logIndex": row["log_index"],
        "gasUsed": row["gas_used"],
        "createdAt": when(row["created_at"]),
        "submittedAt": when(row["submitted_at"]),
        "finishedAt": when(row["finished_at"]),
        "confirmedAt": when(row["confirmed_at"]),
    }
