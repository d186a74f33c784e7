"""The hand-written EIP-712 hot path against eth-account's generic implementation."""

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from backend.chain import typed_data
from backend.chain.typed_data import ZERO_ADDRESS, Domain, Operation, TokenStandard

KEY = keccak(text="unit-signer")
SIGNER = Account.from_key(KEY)
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def ops(count: int, token_id: int = 0) -> list[Operation]:
    return [
        Operation(ZERO_ADDRESS, f"0x{i + 1:040x}", 10**18 * (i + 1), typed_data.make_ref(5, i), token_id)
        for i in range(count)
    ]


@pytest.mark.parametrize("standard", list(TokenStandard))
@pytest.mark.parametrize("count", [0, 1, 7])
def test_digest_and_signature_match_eth_account(standard: TokenStandard, count: int) -> None:
    domain = Domain(standard, 31337, CONTRACT, "Acme Points" if standard is TokenStandard.CREDIT else "")
    batch, deadline = ops(count, token_id=3), 2**40
    document = typed_data.typed_data(domain, SIGNER.address, batch, deadline)
    signable = encode_typed_data(full_message=document)
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert typed_data.digest(domain, SIGNER.address, batch, deadline) == expected
    signature = typed_data.sign(expected, KEY)
    assert signature == Account.sign_typed_data(KEY, full_message=document).signature
    assert typed_data.recover(expected, signature) == SIGNER.address
    assert typed_data.verify(domain, SIGNER.address, batch, deadline, signature)


def test_typed_data_is_plain_json_with_exact_integers() -> None:
    big = 2**256 - 1
    domain = Domain(TokenStandard.REWARDS, 1, CONTRACT)
    document = typed_data.typed_data(
        domain, SIGNER.address, [Operation(ZERO_ADDRESS, CONTRACT, big, bytes(32), 9)], 5
    )
    assert document["message"]["signer"] == SIGNER.address
    (op,) = document["message"]["ops"]
    assert op == {
        "from": ZERO_ADDRESS,
        "to": CONTRACT,
        "id": "9",
        "amount": str(big),
        "ref": "0x" + "00" * 32,
    }
    assert document["domain"] == {
        "name": "PERS Rewards",
        "version": "1",
        "chainId": "1",
        "verifyingContract": CONTRACT,
    }
    assert [f["name"] for f in document["types"]["Operation"]] == ["from", "to", "id", "amount", "ref"]
    assert [f["name"] for f in document["types"]["Operations"]] == ["signer", "ops", "deadline"]


def test_changing_any_field_changes_the_digest() -> None:
    domain, batch, me = Domain(TokenStandard.CREDIT, 1, CONTRACT, "Acme"), ops(2), SIGNER.address
    base = typed_data.digest(domain, me, batch, 100)
    variants = [
        typed_data.digest(domain, me, batch, 101),
        typed_data.digest(Domain(TokenStandard.CREDIT, 2, CONTRACT, "Acme"), me, batch, 100),
        typed_data.digest(Domain(TokenStandard.CREDIT, 1, "0x" + "11" * 20, "Acme"), me, batch, 100),
        typed_data.digest(Domain(TokenStandard.CREDIT, 1, CONTRACT, "Other"), me, batch, 100),
        typed_data.digest(domain, CONTRACT, batch, 100),
        typed_data.digest(domain, me, batch[::-1], 100),
        typed_data.digest(domain, me, [batch[0]], 100),
        typed_data.digest(domain, me, [batch[0], Operation(ZERO_ADDRESS, batch[1].to, 1, batch[1].ref)], 100),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_verify_refuses_tampering_and_malformed_signatures() -> None:
    domain, batch = Domain(TokenStandard.CREDIT, 1, CONTRACT, "Acme"), ops(1)
    digest = typed_data.digest(domain, SIGNER.address, batch, 100)
    signature = typed_data.sign(digest, KEY)
    assert not typed_data.verify(domain, SIGNER.address, batch, 101, signature)
    assert not typed_data.verify(domain, CONTRACT, batch, 100, signature)
    assert typed_data.recover(digest, signature[:64]) is None
    assert typed_data.recover(digest, signature[:64] + b"\x05") is None
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    flipped = r + (typed_data.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    assert typed_data.recover(digest, flipped) is None  # the malleable twin is refused, as on chain


def test_refs_pack_namespace_and_sequence() -> None:
    ref = typed_data.make_ref(1, 2)
    assert ref == (1 << 128 | 2).to_bytes(32, "big")
    # Consecutive sequences land in the same 256-bit bitmap word on chain.
    words = {int.from_bytes(typed_data.make_ref(9, s), "big") >> 8 for s in range(256)}
    assert len(words) == 1
    for bad in ((-1, 0), (2**128, 0), (0, 2**128)):
        with pytest.raises(ValueError):
            typed_data.make_ref(*bad)


@pytest.mark.parametrize(
    "bad", ["0x1234", "0x" + "g" * 40, "1" * 40, "0x" + "1" * 41, CONTRACT.replace("F", "f", 1), ""]
)
def test_malformed_addresses_are_refused_everywhere(bad: object) -> None:
    domain = Domain(TokenStandard.CREDIT, 1, CONTRACT, "Acme")
    with pytest.raises(ValueError):
        Domain(TokenStandard.CREDIT, 1, bad, "Acme")  # type: ignore[arg-type]
    op = Operation(ZERO_ADDRESS, bad, 1, bytes(32))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        typed_data.digest(domain, SIGNER.address, [op], 1)
    with pytest.raises(ValueError):
        typed_data.typed_data(domain, SIGNER.address, [op], 1)
    with pytest.raises(ValueError):
        typed_data.digest(domain, bad, ops(1), 1)  # type: ignore[arg-type]
    # Lower-case and checksummed forms of a well-formed address are the same address.
    assert typed_data.digest(domain, SIGNER.address.lower(), ops(1), 1) == typed_data.digest(
        domain, SIGNER.address, ops(1), 1
    )


def test_a_credit_domain_is_named_after_the_token() -> None:
    with pytest.raises(ValueError):
        Domain(TokenStandard.CREDIT, 1, CONTRACT)
    with pytest.raises(ValueError):
        Domain(TokenStandard.REWARDS, 1, CONTRACT, "Acme")
    assert Domain(TokenStandard.REWARDS, 1, CONTRACT).name == "PERS Rewards"
