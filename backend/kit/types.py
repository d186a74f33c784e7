"""Request field types shared by several domains; their errors carry their own codes."""

from typing import Annotated, Any

from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

HEX_ADDRESS = "^0x[0-9a-fA-F]{40}$"


def _address(value: Any) -> str:
    """An EVM address: all lowercase or all uppercase hex, or EIP-55 checksummed when mixed case."""
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise PydanticCustomError("invalid_address", "must be a 0x-prefixed 20-byte hex address")
    body = value[2:]
    try:
        bytes.fromhex(body)
    except ValueError:
        raise PydanticCustomError("invalid_address", "must be a 0x-prefixed 20-byte hex address") from None
    if body not in (body.lower(), body.upper()) and not is_checksum_address(value):
        raise PydanticCustomError("invalid_address", "bad EIP-55 checksum")
    return to_checksum_address(value)


Address = Annotated[
    str,
    BeforeValidator(_address),
    WithJsonSchema(
        {"type": "string", "pattern": HEX_ADDRESS, "description": "EVM address (EIP-55 if mixed case)"}
    ),
]
