"""HTTP conventions shared by every router: camelCase schemas, error bodies, pagination."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from backend.kit.errors import PersError

if TYPE_CHECKING:
    from backend.settings import Settings

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


async def known_query_parameters(request: Request) -> None:
    """Refuses a query parameter the route does not declare: a misspelt filter would otherwise be
    ignored, and the caller would take the unfiltered list for the filtered one. Applied to every route
    (async: no I/O, so no trip through the thread pool)."""
    route = request.scope.get("route")
    if not request.scope["query_string"] or not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _query_names(route.dependant))
    if unknown:
        raise PersError(
            f"unknown query parameter: {', '.join(unknown)}",
            code="unknown_parameter",
            status=422,
            parameters=unknown,
        )


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


def app_settings(request: Request) -> "Settings":
    """The running app's settings (its runtime's), for routes that hand them to a service."""
    settings: Settings = request.app.state.runtime.settings
    return settings
