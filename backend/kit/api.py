"""HTTP conventions shared by every router: camelCase schemas, error bodies, pagination, exact integers."""

from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from backend.kit.db import UINT256_MAX

T = TypeVar("T")


class Schema(BaseModel):
    """Response schema: camelCase in JSON."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class Input(Schema):
    """Request body: camelCase, unknown fields refused, no NUL characters (Postgres cannot store them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _uint256(value: Any) -> int:
    # Only decimal strings (or JSON integers) of 0..2^256-1; never floats.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PydanticCustomError("invalid_amount", "must be a decimal integer string")
    if isinstance(value, str) and (not value.isascii() or not value.isdigit() or len(value) > 78):
        raise PydanticCustomError("invalid_amount", "must be a non-negative decimal integer string")
    number = int(value)
    if not 0 <= number <= UINT256_MAX:
        raise PydanticCustomError("invalid_amount", "must be between 0 and 2^256-1")
    return number


Uint256Str = Annotated[
    int,
    BeforeValidator(_uint256),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": "^[0-9]{1,78}$", "description": "uint256 as a decimal string"}
    ),
]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": "error"} for status in statuses}


class PageMeta(BaseModel):
    page: int
    limit: int
    total: int


class Page(BaseModel, Generic[T]):
    data: list[T]
    meta: PageMeta


class Paging:
    def __init__(
        self,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> None:
        self.page, self.limit = page, limit

    def apply(self, session: Session, query: Select[Any]) -> tuple[Sequence[Any], PageMeta]:
        total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
        rows = session.scalars(query.limit(self.limit).offset((self.page - 1) * self.limit)).all()
        return rows, PageMeta(page=self.page, limit=self.limit, total=total)
