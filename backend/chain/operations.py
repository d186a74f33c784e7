"""Submitting signed operation groups to a token contract and reading each operation's outcome."""

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_typing import HexStr
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from backend.chain.client import Chain
from backend.chain.typed_data import Operation, TokenStandard
from backend.kit.errors import GasCapExceeded


class Failure(IntEnum):
    """Mirrors `SignedOperations.Failure`."""

    NONE = 0
    REF_USED = 1
    UNAUTHORIZED = 2
    EXPIRED = 3
    INSUFFICIENT_BALANCE = 4
    LOCKED = 5
    INVALID = 6
    CAP_EXCEEDED = 7
    UNKNOWN_ID = 8
    REJECTED = 9


@dataclass(frozen=True)
class SignedGroup:
    signer: str
    ops: list[Operation]
    deadline: int
    signature: bytes

    def as_abi(self, standard: TokenStandard) -> tuple[Any, ...]:
        ops = [tuple(op.values(standard).values()) for op in self.ops]
        return (self.signer, ops, self.deadline, self.signature)


@dataclass(frozen=True)
class Outcome:
    ref: bytes
    signer: str
    failure: Failure
    tx_hash: bytes
    log_index: int


CONTRACT_NAMES = {TokenStandard.CREDIT: "CreditToken", TokenStandard.REWARDS: "RewardsToken"}


def token(chain: Chain, standard: TokenStandard, address: str) -> Contract:
    return chain.contract(CONTRACT_NAMES[standard], address)


def submit(chain: Chain, standard: TokenStandard, address: str, groups: list[SignedGroup]) -> list[TxReceipt]:
    """Executes the groups in as few transactions as the gas cap allows: a batch over the cap is
    split in halves until each part fits (a group is signed whole and never split)."""
    contract = token(chain, standard, address)
    data = contract.encode_abi("execute", args=[[g.as_abi(standard) for g in groups]])
    try:
        return [chain.send({"to": contract.address, "data": HexStr(data)})]
    except GasCapExceeded:
        if len(groups) == 1:
            raise
    middle = len(groups) // 2
    return submit(chain, standard, address, groups[:middle]) + submit(
        chain, standard, address, groups[middle:]
    )


def outcomes(contract: Contract, receipt: TxReceipt) -> list[Outcome]:
    """Each operation's result in the order the contract settled them."""
    found = []
    for name in ("OperationExecuted", "OperationFailed"):
        for event in getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD):
            args = event["args"]
            reason = Failure(args["reason"]) if name == "OperationFailed" else Failure.NONE
            found.append(
                Outcome(args["ref"], args["signer"], reason, event["transactionHash"], event["logIndex"])
            )
    return sorted(found, key=lambda o: o.log_index)
