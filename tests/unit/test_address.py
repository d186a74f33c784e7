"""The API's EIP-55 checksum against eth_utils', and the address field it serves."""

import os

import pytest
from eth_utils.address import to_checksum_address
from pydantic import TypeAdapter, ValidationError

from backend.kit.types import Address, checksum_address


def test_the_checksum_is_eth_utils_one() -> None:
    addresses = ["0x" + os.urandom(20).hex() for _ in range(500)] + ["0x" + "00" * 20, "0x" + "ff" * 20]
    for address in addresses:
        expected = to_checksum_address(address)
        assert checksum_address(address) == expected
        assert checksum_address(address.upper().replace("0X", "0x")) == expected


def test_the_field_checksums_and_refuses_a_wrong_mixed_case() -> None:
    field = TypeAdapter(Address)
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example
    assert field.validate_python(good.lower()) == good
    with pytest.raises(ValidationError, match="bad EIP-55 checksum"):
        field.validate_python("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
