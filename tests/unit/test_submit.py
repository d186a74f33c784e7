"""`operations.submit` isolating a group that makes a transaction revert: the chain is a stand-in that
refuses any transaction carrying a poisoned signature (no such group exists on the real contracts,
which is why this is a unit test)."""

from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

from backend.chain import operations
from backend.chain.artifacts import abi
from backend.chain.operations import SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Operation, TokenStandard, make_ref
from backend.kit.errors import ChainError

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
POISON = b"\xde\xad" * 32 + b"\x1b"


class RefusingChain:
    def __init__(self) -> None:
        self.sent: list[int] = []  # how many groups each sent transaction carried

    def contract(self, name: str, address: str) -> Contract:
        return Web3().eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))

    def has_code(self, address: str) -> bool:
        return False

    def send(self, tx: dict[str, Any], extra_gas: int = 0) -> dict[str, Any]:
        if POISON.hex() in tx["data"]:
            raise ChainError("transaction would revert: boom", code="execution_reverted")
        groups = self.contract("CreditToken", TOKEN).decode_function_input(tx["data"])[1]["groups"]
        self.sent.append(len(groups))
        return {"groups": len(groups)}


def group(n: int, signature: bytes = b"\x01" * 65) -> SignedGroup:
    op = Operation(ZERO_ADDRESS, "0x" + "11" * 20, 1, make_ref(1, n))
    return SignedGroup("0x" + "22" * 20, [op], 2**40, signature)


def submit(chain: RefusingChain, groups: list[SignedGroup]) -> operations.Submission:
    return operations.submit(chain, TokenStandard.CREDIT, TOKEN, groups)  # type: ignore[arg-type]


def test_a_reverting_group_is_refused_alone_and_the_others_are_sent() -> None:
    chain = RefusingChain()
    groups = [group(i) for i in range(7)]
    bad = group(99, POISON)
    result = submit(chain, [*groups[:3], bad, *groups[3:]])
    assert [g for g, _ in result.refused] == [bad]
    assert result.refused[0][1].code == "execution_reverted"
    assert sum(chain.sent) == 7 and len(result.receipts) == len(chain.sent)


def test_when_nothing_can_be_sent_the_error_is_raised() -> None:
    chain = RefusingChain()
    with pytest.raises(ChainError, match="would revert"):
        submit(chain, [group(1, POISON), group(2, POISON)])
    assert chain.sent == []


def test_other_errors_are_not_bisected() -> None:
    class Down(RefusingChain):
        def send(self, tx: dict[str, Any], extra_gas: int = 0) -> dict[str, Any]:
            raise ChainError("node unreachable", code="rpc_unreachable")

    with pytest.raises(ChainError, match="unreachable"):
        submit(Down(), [group(1), group(2)])
