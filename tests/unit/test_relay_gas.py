"""A relayer transaction that reverted for lack of gas is told from one the operations made revert:
its operations go back to the queue instead of failing. A batch of mints is sized by one run of
`eth_createAccessList`; anything else by the node's estimate."""

import uuid
from types import SimpleNamespace

import pytest
from eth_account import Account

from backend.kit.errors import ChainError
from backend.relay.models import RelayerTransaction
from backend.relay.pump import Receipt, _needed_gas, _out_of_gas

LIMIT = 77_556


def sent(gas: int) -> RelayerTransaction:
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": 0,
        "to": "0x" + "11" * 20,
        "data": "0x",
        "gas": gas,
        "maxFeePerGas": 2,
        "maxPriorityFeePerGas": 1,
        "value": 0,
    }
    raw = bytes(Account.create().sign_transaction(tx).raw_transaction)
    return RelayerTransaction(id=uuid.uuid4(), raw=raw)


@pytest.mark.parametrize(
    ("gas_used", "starved"),
    [
        (LIMIT, True),  # the transaction itself ran out
        (76_806, True),  # an inner call starved; the 1/64 it kept back paid for the revert (seen on anvil)
        (LIMIT - LIMIT // 64 - 1, False),
        (30_000, False),  # reverted with gas to spare: the operations' doing
    ],
)
def test_a_revert_within_the_last_64th_of_the_gas_is_out_of_gas(gas_used: int, starved: bool) -> None:
    receipt = Receipt(status=0, block_number=1, gas_used=gas_used, tx_hash="0x", logs=[])
    assert _out_of_gas(sent(LIMIT), receipt) is starved


class _Node:
    """What `_needed_gas` asks of a chain: a raw JSON-RPC call and web3's estimate."""

    def __init__(self, access_list: Exception | dict[str, str]) -> None:
        self.access_list, self.asked = access_list, []
        self.w3 = SimpleNamespace(eth=SimpleNamespace(estimate_gas=self.estimate_gas))

    def rpc(self, method: str, *params: object) -> dict[str, str]:
        self.asked.append(method)
        if isinstance(self.access_list, Exception):
            raise self.access_list
        return self.access_list

    def estimate_gas(self, call: object) -> int:
        self.asked.append("eth_estimateGas")
        return 90_000


def _ops(*types: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(type=t) for t in types]


def test_mints_are_sized_by_one_run_of_the_access_list() -> None:
    node = _Node({"accessList": [], "gasUsed": hex(80_000)})
    assert _needed_gas(node, {}, _ops("mint", "mint")) == 80_000  # type: ignore[arg-type]
    assert node.asked == ["eth_createAccessList"]


@pytest.mark.parametrize(
    ("answer", "types"),
    [
        ({"accessList": [], "gasUsed": hex(80_000)}, ("mint", "burn")),  # a burn may free storage
        ({"accessList": [], "gasUsed": hex(80_000), "error": "execution reverted"}, ("mint",)),
        (ChainError("eth_createAccessList failed: method not found"), ("mint",)),
    ],
)
def test_anything_else_is_estimated(answer: Exception | dict[str, str], types: tuple[str, ...]) -> None:
    node = _Node(answer)
    assert _needed_gas(node, {}, _ops(*types)) == 90_000  # type: ignore[arg-type]
    assert node.asked[-1] == "eth_estimateGas"
