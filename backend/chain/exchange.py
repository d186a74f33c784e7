"""Atomic exchanges through the `ExchangeRouter` (docs/adr/0002-atomic-exchange.md): each leg is one
operation signed as `ExchangeLeg(…, bytes32 exchange)` in its token's domain; the router runs both legs
of an exchange or neither and reports `ExchangeExecuted` / `ExchangeFailed` per exchange."""

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_hash.auto import keccak
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from backend.chain.client import Chain
from backend.chain.operations import Failure
from backend.chain.typed_data import Domain, Operation, domain_separator, sign

ROUTER = "ExchangeRouter"
EXCHANGE_GAS = 600_000  # ExchangeRouter.EXCHANGE_GAS (tests hold them equal)
_LEG_FIELDS = [
    {"name": "signer", "type": "address"},
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "id", "type": "uint256"},
    {"name": "amount", "type": "uint256"},
    {"name": "ref", "type": "bytes32"},
    {"name": "deadline", "type": "uint256"},
    {"name": "exchange", "type": "bytes32"},
]
LEG_TYPEHASH = keccak(
    ("ExchangeLeg(" + ",".join(f"{f['type']} {f['name']}" for f in _LEG_FIELDS) + ")").encode()
)
_LEG_FAILED = keccak(b"LegFailed(bytes32,uint8)")[:4]
_EXECUTED = keccak(b"ExchangeExecuted(bytes32)")
_FAILED = keccak(b"ExchangeFailed(bytes32,bytes)")


def _words(*values: Any) -> bytes:
    out = b""
    for value in values:
        if isinstance(value, bytes):
            out += value
        elif isinstance(value, int):
            out += value.to_bytes(32, "big")
        else:
            out += bytes(12) + bytes.fromhex(to_checksum_address(value)[2:])
    return out


def leg_digest(domain: Domain, signer: str, op: Operation, deadline: int, exchange: bytes) -> bytes:
    """The EIP-712 digest of one leg, as the token's `executeLeg` verifies it."""
    fields = (signer, op.from_, op.to, op.token_id, op.amount, op.ref, deadline, exchange)
    struct = keccak(LEG_TYPEHASH + _words(*fields))
    return keccak(b"\x19\x01" + domain_separator(domain) + struct)


def leg_typed_data(
    domain: Domain, signer: str, op: Operation, deadline: int, exchange: bytes
) -> dict[str, Any]:
    """The `eth_signTypedData_v4` document of a leg, for a wallet to sign (integers as decimal strings)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "ExchangeLeg": _LEG_FIELDS,
        },
        "primaryType": "ExchangeLeg",
        "domain": {**domain.as_json(), "chainId": str(domain.chain_id)},
        "message": {
            "signer": to_checksum_address(signer),
            "from": to_checksum_address(op.from_),
            "to": to_checksum_address(op.to),
            "id": str(op.token_id),
            "amount": str(op.amount),
            "ref": "0x" + op.ref.hex(),
            "deadline": str(deadline),
            "exchange": "0x" + exchange.hex(),
        },
    }


@dataclass(frozen=True)
class Leg:
    signer: str
    op: Operation
    deadline: int
    signature: bytes

    def as_abi(self) -> tuple[Any, ...]:
        op = self.op
        return (self.signer, op.from_, op.to, op.token_id, op.amount, op.ref, self.deadline, self.signature)


def signed_leg(domain: Domain, signer: str, key: bytes, op: Operation, deadline: int, exchange: bytes) -> Leg:
    return Leg(signer, op, deadline, sign(leg_digest(domain, signer, op, deadline, exchange), key))


@dataclass(frozen=True)
class Exchange:
    id: bytes
    cost_token: str
    cost: Leg
    reward_token: str
    reward: Leg

    def as_abi(self) -> tuple[Any, ...]:
        return (self.id, self.cost_token, self.cost.as_abi(), self.reward_token, self.reward.as_abi())


@dataclass(frozen=True)
class ExchangeOutcome:
    id: bytes
    executed: bool
    failure: Failure | None  # the failing leg's reason when a token reported one
    failed_ref: bytes | None
    reason: bytes  # the raw revert data of a failed exchange

    @property
    def code(self) -> str:
        """A machine-readable failure code: the leg's failure, or `exchange_reverted` (a pause, …)."""
        return self.failure.name.lower() if self.failure is not None else "exchange_reverted"


def router(chain: Chain, address: str) -> Contract:
    return chain.contract(ROUTER, address)


def send(chain: Chain, router_address: str, exchanges: list[Exchange]) -> TxReceipt:
    """One transaction executing the exchanges. The estimate covers each exchange's real use: the router
    (and a token for its receivers) reverts rather than fail an exchange that got less than its budget."""
    contract = router(chain, router_address)
    data = contract.encode_abi("execute", args=[[x.as_abi() for x in exchanges]])
    return chain.send({"to": contract.address, "data": HexStr(data)})


def outcomes(router_address: str, receipt: TxReceipt) -> list[ExchangeOutcome]:
    """Each exchange's result, from the router's own logs only, in order."""
    found = []
    address = Web3.to_checksum_address(router_address)
    for log in receipt["logs"]:
        if log["address"] != address or not log["topics"]:
            continue
        topic, exchange_id = bytes(log["topics"][0]), bytes(log["topics"][1])
        if topic == _EXECUTED:
            found.append(ExchangeOutcome(exchange_id, True, None, None, b""))
        elif topic == _FAILED:
            (reason,) = decode(["bytes"], bytes(log["data"]))
            failure, ref = _leg_failure(reason)
            found.append(ExchangeOutcome(exchange_id, False, failure, ref, reason))
    return found


def _leg_failure(reason: bytes) -> tuple[Failure | None, bytes | None]:
    if reason[:4] != _LEG_FAILED or len(reason) != 68:
        return None, None
    ref, failure = decode(["bytes32", "uint8"], reason[4:])
    return Failure(failure), bytes(ref)
