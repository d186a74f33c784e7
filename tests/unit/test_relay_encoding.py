"""The pump's hand-built calldata equals web3's encoding of the same groups."""

import secrets

import pytest
from web3 import Web3

from backend.chain.artifacts import abi
from backend.chain.operations import CONTRACT_NAMES, SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Domain, Operation, TokenStandard, digest, encoded_digest
from backend.relay.encoding import encode_group, execute_data


@pytest.mark.parametrize("standard", list(TokenStandard))
def test_execute_calldata_matches_web3(standard: TokenStandard) -> None:
    contract = Web3().eth.contract(abi=abi(CONTRACT_NAMES[standard]))

    def op(i: int) -> Operation:
        to = Web3.to_checksum_address(secrets.token_bytes(20))
        return Operation(ZERO_ADDRESS, to, 2**200 + i, secrets.token_bytes(32), token_id=i % 3)

    groups = [
        SignedGroup(
            Web3.to_checksum_address(secrets.token_bytes(20)), [op(i) for i in range(n)], 10**12 + n, sig
        )
        for n, sig in (
            (1, secrets.token_bytes(65)),
            (3, secrets.token_bytes(65)),
            (0, b""),
            (2, secrets.token_bytes(64)),
        )
    ]
    expected = contract.encode_abi("execute", args=[[g.as_abi(standard) for g in groups]])
    assert execute_data(standard, [encode_group(standard, g) for g in groups]) == expected
    assert execute_data(standard, []) == contract.encode_abi("execute", args=[[]])


@pytest.mark.parametrize("standard", list(TokenStandard))
def test_the_digest_of_encoded_operations_is_the_typed_data_digest(standard: TokenStandard) -> None:
    name = "Credit" if standard is TokenStandard.CREDIT else ""
    dom = Domain(standard, 31337, Web3.to_checksum_address(secrets.token_bytes(20)), name)
    signer = Web3.to_checksum_address(secrets.token_bytes(20))
    ops = [
        Operation(
            ZERO_ADDRESS, Web3.to_checksum_address(secrets.token_bytes(20)), i + 1, secrets.token_bytes(32), i
        )
        for i in range(3)
    ]
    encoded = encode_group(standard, SignedGroup(signer, ops, 10**12, b"")).ops
    assert encoded_digest(dom, signer, encoded, 10**12) == digest(dom, signer, ops, 10**12)
