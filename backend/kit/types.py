"""Request field types shared by several domains."""

from typing import Annotated

from eth_utils.address import is_address, is_checksum_address, to_checksum_address
from pydantic import AfterValidator, Field


def _address(value: str) -> str:
    """An EVM address: all lowercase, or EIP-55 checksummed when mixed case (a wrong checksum is refused)."""
    if not is_address(value) or not value.startswith("0x"):
        raise ValueError("not a 20-byte hex address")
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ValueError("bad EIP-55 checksum")
    return to_checksum_address(value)


Address = Annotated[
    str, Field(pattern=r"^0x[0-9a-fA-F]{40}$", examples=["0x" + "ab" * 20]), AfterValidator(_address)
]
