"""A relayer transaction that reverted for lack of gas is told from one the operations made revert:
its operations go back to the queue instead of failing."""

import uuid

import pytest
from eth_account import Account

from backend.relay.models import RelayerTransaction
from backend.relay.pump import Receipt, _out_of_gas

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
