"""EIP-712 typed data for signed operations.

`typed_data()` builds the standard `eth_signTypedData_v4` JSON any wallet signs. The hot path
(`digest()`, `sign()`) computes the same digest directly from precomputed type and domain hashes
and signs with coincurve, about ten times faster than eth-account's generic encoder; tests hold
the two to the same result."""

from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

from coincurve import PrivateKey, PublicKey
from eth_utils.address import is_address, to_checksum_address

from backend.kit.types import keccak

DOMAIN_VERSION = "1"
_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class TokenStandard(Enum):
    """Which contract family an operation targets: its fixed EIP-712 domain name (none for a credit,
    whose domain is named after the token's `name()`) and its operation fields."""

    CREDIT = (None, ("from", "to", "amount", "ref"))
    REWARDS = ("PERS Rewards", ("from", "to", "id", "amount", "ref"))

    def __init__(self, domain_name: str | None, fields: tuple[str, ...]) -> None:
        self.domain_name = domain_name
        self.fields = fields

    @property
    def operation_type(self) -> list[dict[str, str]]:
        kinds = {"from": "address", "to": "address", "id": "uint256", "amount": "uint256", "ref": "bytes32"}
        return [{"name": f, "type": kinds[f]} for f in self.fields]

    @property
    def operation_signature(self) -> str:
        return "Operation(" + ",".join(f"{t['type']} {t['name']}" for t in self.operation_type) + ")"

    @property
    def operation_typehash(self) -> bytes:
        return _typehash(self.operation_signature)

    @property
    def operations_typehash(self) -> bytes:
        return _typehash(
            "Operations(address signer,Operation[] ops,uint256 deadline)" + self.operation_signature
        )


@cache
def _typehash(signature: str) -> bytes:
    return keccak(signature.encode())


@dataclass(frozen=True)
class Operation:
    """One token movement; `from_ == 0x0` mints, `to == 0x0` burns. `token_id` is for ERC-1155 only."""

    from_: str
    to: str
    amount: int
    ref: bytes
    token_id: int = 0

    def values(self, standard: TokenStandard) -> dict[str, Any]:
        every = {
            "from": self.from_,
            "to": self.to,
            "id": self.token_id,
            "amount": self.amount,
            "ref": self.ref,
        }
        return {f: every[f] for f in standard.fields}


@dataclass(frozen=True)
class Domain:
    """A token's EIP-712 domain; `name` is the credit token's `name()` (a rewards token's is fixed)."""

    standard: TokenStandard
    chain_id: int
    verifying_contract: str
    name: str = ""

    def __post_init__(self) -> None:
        _address_word(self.verifying_contract)
        fixed = self.standard.domain_name
        if fixed is None and not self.name:
            raise ValueError("a credit token's domain is named after the token: pass its name()")
        if fixed is not None and self.name not in ("", fixed):
            raise ValueError(f"a rewards token's domain is named {fixed!r}")
        object.__setattr__(self, "name", fixed or self.name)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


ZERO_ADDRESS = "0x" + "00" * 20


def make_ref(namespace: int, sequence: int) -> bytes:
    """A ref from a 128-bit namespace (one per signer lane) and a sequence number within it.
    Consecutive sequence numbers share the contract's bitmap word, which is what makes batches cheap."""
    if not 0 <= namespace < 2**128 or not 0 <= sequence < 2**128:
        raise ValueError("namespace and sequence must fit in 128 bits")
    return ((namespace << 128) | sequence).to_bytes(32, "big")


def typed_data(domain: Domain, signer: str, ops: list[Operation], deadline: int) -> dict[str, Any]:
    """The `eth_signTypedData_v4` document; integers as decimal strings so JSON keeps them exact."""
    standard = domain.standard

    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return "0x" + value.hex()
        if isinstance(value, int):
            return str(value)
        _address_word(value)
        return to_checksum_address(value)

    return {
        "types": {
            "EIP712Domain": _DOMAIN_FIELDS,
            "Operations": [
                {"name": "signer", "type": "address"},
                {"name": "ops", "type": "Operation[]"},
                {"name": "deadline", "type": "uint256"},
            ],
            "Operation": standard.operation_type,
        },
        "primaryType": "Operations",
        "domain": {**domain.as_json(), "chainId": str(domain.chain_id)},
        "message": {
            "signer": encode(signer),
            "ops": [{k: encode(v) for k, v in op.values(standard).items()} for op in ops],
            "deadline": str(deadline),
        },
    }


@cache
def domain_separator(domain: Domain) -> bytes:
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(domain.name.encode())
        + keccak(DOMAIN_VERSION.encode())
        + domain.chain_id.to_bytes(32, "big")
        + _address_word(domain.verifying_contract)
    )


def _address_word(address: str) -> bytes:
    """An address as an ABI word: 0x and 40 hex digits, checksummed when mixed-case; nothing else."""
    well_formed = isinstance(address, str) and len(address) == 42 and address[:2] == "0x"
    if not well_formed or not is_address(address) or _bad_checksum(address):
        raise ValueError(f"not an address: {address!r}")
    return bytes(12) + bytes.fromhex(address[2:])


def _bad_checksum(address: str) -> bool:
    digits = address[2:]
    return digits != digits.lower() and digits != digits.upper() and to_checksum_address(address) != address


def _word(value: Any) -> bytes:
    if isinstance(value, bytes):
        if len(value) != 32:
            raise ValueError("a ref is exactly 32 bytes")
        return value
    if isinstance(value, int):
        return value.to_bytes(32, "big")
    return _address_word(value)


def struct_hash(standard: TokenStandard, signer: str, ops: list[Operation], deadline: int) -> bytes:
    """`hashStruct(Operations(signer, ops, deadline))`: the signer is signed, so a signature that two
    accounts would accept (an EOA and a wallet it owns) still runs under one of them only."""
    encoded = [b"".join(_word(v) for v in op.values(standard).values()) for op in ops]
    return encoded_struct_hash(standard, signer, encoded, deadline)


def encoded_struct_hash(
    standard: TokenStandard, signer: str, encoded_ops: list[bytes], deadline: int
) -> bytes:
    """`struct_hash` over operations already encoded as their fields' words (an operation's
    `encodeData` is also its ABI encoding: the relay encodes each operation once for both)."""
    op_typehash = standard.operation_typehash
    op_hashes = b"".join(keccak(op_typehash + encoded) for encoded in encoded_ops)
    return keccak(
        standard.operations_typehash
        + _address_word(signer)
        + keccak(op_hashes)
        + deadline.to_bytes(32, "big")
    )


def digest(domain: Domain, signer: str, ops: list[Operation], deadline: int) -> bytes:
    """The EIP-712 digest the contracts verify: keccak(0x1901 ‖ domainSeparator ‖ structHash)."""
    return _digest(domain, struct_hash(domain.standard, signer, ops, deadline))


def encoded_digest(domain: Domain, signer: str, encoded_ops: list[bytes], deadline: int) -> bytes:
    """`digest` over operations already encoded as their fields' words."""
    return _digest(domain, encoded_struct_hash(domain.standard, signer, encoded_ops, deadline))


def _digest(domain: Domain, struct: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain_separator(domain) + struct)


def sign(message_digest: bytes, private_key: bytes) -> bytes:
    """A 65-byte `r ‖ s ‖ v` signature (v = 27/28) over a 32-byte digest."""
    signature = PrivateKey(private_key).sign_recoverable(message_digest, hasher=None)
    return signature[:64] + bytes([signature[64] + 27])


def recover(message_digest: bytes, signature: bytes) -> str | None:
    """The EOA that signed `message_digest`, or None for a malformed or high-s signature."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    if int.from_bytes(signature[32:64], "big") > SECP256K1_N // 2:
        return None  # malleable form; the contracts (OpenZeppelin ECDSA) refuse it too
    try:
        public = PublicKey.from_signature_and_message(
            signature[:64] + bytes([signature[64] - 27]), message_digest, hasher=None
        )
    except ValueError:
        return None
    return to_checksum_address(keccak(public.format(compressed=False)[1:])[-20:])


def verify(domain: Domain, signer: str, ops: list[Operation], deadline: int, signature: bytes) -> bool:
    """Off-chain check of an ECDSA signature, as the contract does it first (for EOAs, including
    EIP-7702-delegated ones); a contract signer's ERC-1271 answer is `operations.screen`'s to ask."""
    recovered = recover(digest(domain, signer, ops, deadline), signature)
    return recovered is not None and recovered == to_checksum_address(signer)
