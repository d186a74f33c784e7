"""Hand-built ABI encoding of `execute(SignedGroup[])` and raw receipt reading: web3's generic encoder
and result formatters cost more than everything else the pump does per operation. Tests hold the
encoding equal to web3's."""

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_hash.auto import keccak

from backend.chain.operations import SignedGroup
from backend.chain.typed_data import TokenStandard

_WORD = 32


@cache
def selector(standard: TokenStandard) -> bytes:
    operation = "(" + ",".join(t["type"] for t in standard.operation_type) + ")"
    return keccak(f"execute((address,{operation}[],uint256,bytes)[])".encode())[:4]


def _word(value: int) -> bytes:
    return value.to_bytes(_WORD, "big")


def _address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


@dataclass(frozen=True)
class EncodedGroup:
    """A signed group whose operations are already encoded as their fields' words: the same bytes
    are the operation's EIP-712 `encodeData` (hashed for the signature) and its calldata."""

    signer: str
    ops: list[bytes]
    deadline: int
    signature: bytes


@cache
def _layout(standard: TokenStandard) -> str:
    """The hex of one operation's words, to be formatted with (from, to, amount, ref, token id)."""
    pad = "0" * 24  # an address's word starts with 12 zero bytes
    words = {"from": pad + "{0}", "to": pad + "{1}", "amount": "{2:064x}", "ref": "{3}", "id": "{4:064x}"}
    return "".join(words[name] for name in standard.fields)


def encode_operation(
    standard: TokenStandard, from_: str, to: str, amount: int, ref: bytes, token_id: int = 0
) -> bytes:
    """One operation's words, from addresses the API already checked (no checksum work here), in one
    conversion from hex (a word at a time cost twice as much)."""
    return bytes.fromhex(_layout(standard).format(from_[2:], to[2:], amount, ref.hex(), token_id))


def encode_group(standard: TokenStandard, group: SignedGroup) -> EncodedGroup:
    ops = [encode_operation(standard, op.from_, op.to, op.amount, op.ref, op.token_id) for op in group.ops]
    return EncodedGroup(group.signer, ops, group.deadline, group.signature)


def _group(group: EncodedGroup) -> bytes:
    ops = b"".join(group.ops)
    signature = group.signature + bytes(-len(group.signature) % _WORD)
    ops_offset = 4 * _WORD
    signature_offset = ops_offset + _WORD + len(ops)
    return (
        _address(group.signer)
        + _word(ops_offset)
        + _word(group.deadline)
        + _word(signature_offset)
        + _word(len(group.ops))
        + ops
        + _word(len(group.signature))
        + signature
    )


def execute_data(standard: TokenStandard, groups: list[EncodedGroup]) -> str:
    """The calldata of `execute(groups)`, as `contract.encode_abi("execute", ...)` builds it."""
    encoded = [_group(g) for g in groups]
    offsets, position = [], len(encoded) * _WORD
    for part in encoded:
        offsets.append(_word(position))
        position += len(part)
    body = _word(_WORD) + _word(len(groups)) + b"".join(offsets) + b"".join(encoded)
    return "0x" + (selector(standard) + body).hex()


def as_int(value: Any) -> int:
    """A quantity from a raw JSON-RPC answer (hex text) or an in-process provider (int)."""
    return int(value, 16) if isinstance(value, str) else int(value)


def field(raw: dict[str, Any], name: str) -> Any:
    """A raw answer's field: camelCase from a node, snake_case from the embedded EVM's provider."""
    if name in raw:
        return raw[name]
    return raw["".join(f"_{c.lower()}" if c.isupper() else c for c in name)]
