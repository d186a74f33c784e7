"""Request field types shared by several domains; their errors carry their own codes."""

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from eth_hash.backends.pysha3 import PySha3Backend
from pydantic import (
    AfterValidator,
    BeforeValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from backend.kit.db import UINT256_MAX

HEX_ADDRESS = "^0x[0-9a-fA-F]{40}$"


# eth_hash's automatic choice here is pycryptodome, ~15x slower than pysha3 on an address's 40 bytes;
# a checksum per recipient was a third of the batch route's CPU (and hashing each operation for a
# group's signature 6% of the pump's).
keccak = PySha3Backend().keccak256


@lru_cache(maxsize=8192)  # a tenant's holders come back request after request, batch after batch
def checksum_address(value: str) -> str:
    """EIP-55 of a 0x-prefixed 40-digit hex address (its form checked by the caller): what eth_utils'
    `to_checksum_address` answers (tested against it), without its checks and conversions."""
    body = value[2:].lower()
    digest = keccak(body.encode("ascii")).hex()[:40]
    return "0x" + "".join([c.upper() if h > "7" else c for c, h in zip(body, digest, strict=True)])


def _address(value: Any) -> str:
    """An EVM address: all lowercase or all uppercase hex, or EIP-55 checksummed when mixed case."""
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise PydanticCustomError("invalid_address", "must be a 0x-prefixed 20-byte hex address")
    body = value[2:]
    try:
        bytes.fromhex(body)
    except ValueError:
        raise PydanticCustomError("invalid_address", "must be a 0x-prefixed 20-byte hex address") from None
    checksummed = checksum_address(value)
    if body not in (body.lower(), body.upper()) and value != checksummed:
        raise PydanticCustomError("invalid_address", "bad EIP-55 checksum")
    return checksummed


Address = Annotated[
    str,
    BeforeValidator(_address),
    WithJsonSchema(
        {"type": "string", "pattern": HEX_ADDRESS, "description": "EVM address (EIP-55 if mixed case)"}
    ),
]


# Codes our own field types raise; the validation handler reports them as they are.
FIELD_CODES = ("invalid_address", "amount_must_be_string", "invalid_amount", "field_too_large")


def _power_text(number: int) -> str:
    """2^256-1 rather than 78 digits, where a bound is one less than a power of two."""
    if number > 2**16 and (number + 1) & number == 0:
        return f"2^{(number + 1).bit_length() - 1}-1"
    return str(number)


@dataclass(frozen=True)
class Amount:
    """An integer field sent as a decimal string (SPEC §5), as `Annotated[int, Amount(low, high)]`.
    A JSON number is refused: JavaScript clients round integers above 2^53 before they reach us. The
    field's range is one rule with one message, whatever the value outside it; `code` names it."""

    low: int = 0
    high: int = UINT256_MAX
    code: str = "amount_out_of_range"

    @property
    def bounds(self) -> str:
        return f"{_power_text(self.low)} to {_power_text(self.high)}"

    def parse(self, value: Any) -> int:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise PydanticCustomError("amount_must_be_string", "send this amount as a decimal string")
        if not isinstance(value, str) or not value.isascii() or not value.isdigit():
            raise PydanticCustomError("invalid_amount", "must be a decimal integer string")
        # Longer than uint256 can be is out of range without converting it (int() of huge text is slow).
        number = int(value) if len(value.lstrip("0")) <= 78 else self.high + 1
        if not self.low <= number <= self.high:
            raise PydanticCustomError(self.code, "must be {bounds}", {"bounds": self.bounds})
        return number

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": "^[0-9]+$", "description": f"a decimal string, {self.bounds}"}


# Amounts as the API answers them: decimal strings (read from our own rows, so not checked again).
Uint256Out = Annotated[
    int,
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": "^[0-9]{1,78}$", "description": "uint256 as a decimal string"}
    ),
]

# Free-form JSON a caller stores on a record (attributes, metadata): bounded, since every later read
# returns it whole (a 30 MB attribute made each page of a user list 33 MB).
MAX_JSON_FIELD_BYTES = 16 * 1024


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_JSON_FIELD_BYTES:
        raise PydanticCustomError(
            "field_too_large",
            "must be at most {limit} bytes as compact JSON (is {size})",
            {"limit": MAX_JSON_FIELD_BYTES, "size": size},
        )
    return value


JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(_bounded),
    WithJsonSchema(
        {
            "type": "object",
            "description": f"any JSON object of at most {MAX_JSON_FIELD_BYTES} bytes as compact JSON",
        }
    ),
]
