"""Submitting signed operation groups to a token contract and reading each operation's outcome."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_tester.exceptions import TransactionFailed
from eth_typing import HexStr
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception
from web3.types import TxReceipt

from backend.chain.client import Chain
from backend.chain.typed_data import Domain, Operation, TokenStandard, digest, verify
from backend.kit.errors import ChainError, GasCapExceeded

# Mirrors of the contracts' constants (tests hold them equal).
SIGNATURE_GAS = 100_000  # SignedOperations.SIGNATURE_GAS: an ERC-1271 signer's validation budget
RECEIVER_GAS = 200_000  # RewardsToken.RECEIVER_GAS: a receiving contract's acceptance budget
ERC1271_MAGIC = bytes.fromhex("1626ba7e")


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
    OVERFLOW = 10


# Outcomes that consume nothing: the operation may still run later (REF_USED: it ran, or was
# cancelled, before; UNAUTHORIZED and EXPIRED: anyone can provoke them with a bad signature).
NOT_FINAL = frozenset({Failure.REF_USED, Failure.UNAUTHORIZED, Failure.EXPIRED})


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

    @property
    def final(self) -> bool:
        """Whether this operation consumed its ref here (executed or failed for good)."""
        return self.failure not in NOT_FINAL


@dataclass
class Submission:
    """The transactions sent, and the groups refused because they alone made a transaction revert
    (or exceed the gas cap), each with its error; their refs are untouched."""

    receipts: list[TxReceipt] = field(default_factory=list)
    refused: list[tuple[SignedGroup, ChainError]] = field(default_factory=list)


CONTRACT_NAMES = {TokenStandard.CREDIT: "CreditToken", TokenStandard.REWARDS: "RewardsToken"}


def token(chain: Chain, standard: TokenStandard, address: str) -> Contract:
    return chain.contract(CONTRACT_NAMES[standard], address)


def domain(chain: Chain, standard: TokenStandard, address: str) -> Domain:
    """The token's EIP-712 domain as it reports it (ERC-5267)."""
    _, name, _, chain_id, contract, _, _ = token(chain, standard, address).functions.eip712Domain().call()
    return Domain(standard, int(chain_id), contract, name)


def submit(chain: Chain, standard: TokenStandard, address: str, groups: list[SignedGroup]) -> Submission:
    """Executes the groups in as few transactions as possible. A batch that is over the gas cap or
    would revert is split in halves until each part goes through; a single group that still fails is
    refused alone (a group is signed whole and never split). The gas limit adds the receiver budget
    for every operation delivering to a contract, which the token guarantees or reverts.
    When nothing at all could be sent, the first group's error is raised."""
    result = Submission()
    _submit(chain, token(chain, standard, address), standard, groups, result, _ContractCache(chain))
    if not result.receipts and result.refused:
        raise result.refused[0][1]
    return result


def _submit(
    chain: Chain,
    contract: Contract,
    standard: TokenStandard,
    groups: list[SignedGroup],
    result: Submission,
    contracts: "_ContractCache",
) -> None:
    data = contract.encode_abi("execute", args=[[g.as_abi(standard) for g in groups]])
    receivers = 0
    if standard is TokenStandard.REWARDS:
        receivers = sum(1 for g in groups for op in g.ops if int(op.to, 16) and contracts.has_code(op.to))
    try:
        result.receipts.append(
            chain.send({"to": contract.address, "data": HexStr(data)}, extra_gas=receivers * RECEIVER_GAS)
        )
        return
    except ChainError as exc:
        if not isinstance(exc, GasCapExceeded) and exc.code != "execution_reverted":
            raise
        if len(groups) == 1:
            result.refused.append((groups[0], exc))
            return
    middle = len(groups) // 2
    _submit(chain, contract, standard, groups[:middle], result, contracts)
    _submit(chain, contract, standard, groups[middle:], result, contracts)


class _ContractCache:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.known: dict[str, bool] = {}

    def has_code(self, address: str) -> bool:
        if address not in self.known:
            self.known[address] = self.chain.has_code(address)
        return self.known[address]


def screen(
    chain: Chain, dom: Domain, groups: list[SignedGroup]
) -> tuple[list[SignedGroup], list[SignedGroup]]:
    """(valid, refused): each group's signature checked as the contract will check it, before batching.
    An ECDSA signature of the signer passes; otherwise a signer with code is asked through ERC-1271
    within `SIGNATURE_GAS`, so the relay keeps hostile or broken contract signers out of its batches."""
    valid: list[SignedGroup] = []
    refused: list[SignedGroup] = []
    for group in groups:
        ok = verify(dom, group.signer, group.ops, group.deadline, group.signature) or (
            chain.has_code(group.signer) and _erc1271_valid(chain, dom, group)
        )
        (valid if ok else refused).append(group)
    return valid, refused


def _erc1271_valid(chain: Chain, dom: Domain, group: SignedGroup) -> bool:
    message = digest(dom, group.signer, group.ops, group.deadline)
    data = Web3.keccak(text="isValidSignature(bytes32,bytes)")[:4] + chain.w3.codec.encode(
        ["bytes32", "bytes"], [message, group.signature]
    )
    # The callee gets what is left after the intrinsic cost: exactly the on-chain budget.
    intrinsic = 21_000 + sum(16 if byte else 4 for byte in data)
    call = {
        "to": Web3.to_checksum_address(group.signer),
        "data": HexStr(data.hex()),
        "gas": intrinsic + SIGNATURE_GAS,
    }
    try:
        answer = bytes(chain.w3.eth.call(call))  # type: ignore[arg-type]
    except (Web3Exception, ValueError, TransactionFailed):  # reverted, out of gas
        return False
    return len(answer) >= 32 and answer[:4] == ERC1271_MAGIC


def outcomes(contract: Contract, receipt: TxReceipt) -> list[Outcome]:
    """Each operation's result in the order the contract settled them, from the token's own logs only
    (any contract in the transaction, such as a receiver, can emit look-alike events)."""
    events = {
        bytes(Web3.keccak(text="OperationExecuted(bytes32,address)")): contract.events.OperationExecuted(),
        bytes(Web3.keccak(text="OperationFailed(bytes32,address,uint8)")): contract.events.OperationFailed(),
    }
    found = []
    for log in receipt["logs"]:
        if log["address"] != contract.address or not log["topics"]:
            continue
        event = events.get(bytes(log["topics"][0]))
        if event is None:
            continue
        decoded = event.process_log(log)
        args = decoded["args"]
        reason = Failure(args["reason"]) if "reason" in args else Failure.NONE
        found.append(
            Outcome(args["ref"], args["signer"], reason, decoded["transactionHash"], log["logIndex"])
        )
    return sorted(found, key=lambda o: o.log_index)


def settled(contract: Contract, receipts: Iterable[TxReceipt]) -> dict[tuple[str, bytes], Outcome]:
    """The final outcome of each (signer, ref) that these receipts consumed, for the books. Outcomes that
    consume nothing are left out (the operation can still run); a ref settled twice, or reported final
    while the contract says it is unused, means the receipts are not the token's and is an error."""
    final: dict[tuple[str, bytes], Outcome] = {}
    for receipt in receipts:
        for outcome in outcomes(contract, receipt):
            if not outcome.final:
                continue
            key = (outcome.signer, outcome.ref)
            if key in final:
                raise ChainError(f"ref 0x{outcome.ref.hex()} of {outcome.signer} settled twice")
            if not contract.functions.refUsed(*key).call():
                raise ChainError(f"ref 0x{outcome.ref.hex()} of {outcome.signer} reported but unused")
            final[key] = outcome
    return final
