import uuid
from typing import Any, Literal

from pydantic import Field

from backend.kit.api import Schema
from backend.kit.types import Uint256Out

ExportFormat = Literal["csv", "jsonl"]


class AuditEventOut(Schema):
    contract: str
    name: str = Field(description="The event's name; `unknown` for a log of no known layout (raw in `data`)")
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    operator: str | None
    from_: str | None = Field(serialization_alias="from")
    to: str | None
    chain_token_id: Uint256Out | None
    amount: Uint256Out | None
    signer: str | None = Field(description="The signer of the platform operation it belongs to")
    ref: str | None
    data: dict[str, Any] | None
    operation_id: uuid.UUID | None = Field(description="The operation record it belongs to")
    external: bool = Field(description="Belongs to no platform operation (a wallet's own, or administration)")


class LogOut(Schema):
    address: str
    log_index: int
    topics: list[str]
    data: str


class Check(Schema):
    name: str
    ok: bool
    expected: str | None
    actual: str | None


class ProofOut(Schema):
    transaction_id: uuid.UUID
    tx_hash: str
    block_number: int | None = Field(description="From the node's receipt")
    block_hash: str | None
    receipt_status: int | None
    outcome_log: LogOut | None = Field(description="The operation's OperationExecuted or OperationFailed")
    transfer_log: LogOut | None = Field(description="The movement it executed")
    checks: list[Check]
    verified: bool = Field(description="Every check passed: the record, the node and the mirror agree")


class Mismatch(Schema):
    kind: Literal["balance", "supply"]
    contract: str
    chain_token_id: Uint256Out
    token_id: uuid.UUID | None
    holder: str | None
    mirror: Uint256Out
    chain: Uint256Out


class UnmatchedEvent(Schema):
    tx_hash: str
    log_index: int
    contract: str
    name: str
    signer: str | None
    ref: str | None


class Counts(Schema):
    checked: int = 0
    mismatched: int = 0


class EventCounts(Schema):
    checked: int = 0
    mapped: int = Field(default=0, description="Belong to an operation of the books")
    external: int = Field(default=0, description="Carry no operation's ref: wallets' own, administration")
    unmatched: int = Field(default=0, description="Carry an operation's ref the books do not know")


class VerifyReport(Schema):
    network: str | None
    as_of_block: int
    ok: bool
    holders: Counts
    supplies: Counts
    events: EventCounts
    mismatches: list[Mismatch] = Field(description=f"The first {100} mismatches")
    unmatched_events: list[UnmatchedEvent] = Field(description=f"The first {100} unmatched events")
