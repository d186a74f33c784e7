"""Tenant-scoped lookups: every read of a tenant-owned row goes through these, so a row of
another tenant is indistinguishable from a missing one (404)."""

import uuid
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit.errors import NotFound

M = TypeVar("M")


def scoped(model: type[M], scope: TenantScope, *, environment: bool = False) -> Select[M]:
    """`SELECT model WHERE tenant_id = scope` (and the environment, for per-environment rows)."""
    query = select(model).where(model.tenant_id == scope.tenant_id)  # type: ignore[attr-defined]
    if environment:
        query = query.where(model.environment == scope.environment)  # type: ignore[attr-defined]
    return query


def scoped_template(model: type[M], *, environment: bool = False) -> Select[M]:
    """`scoped` with the tenant and environment as bind parameters, for a statement built once (building
    one costs more CPU than running it): run it with `scope_parameters(scope)`."""
    query = select(model).where(model.tenant_id == bindparam("scope_tenant"))  # type: ignore[attr-defined]
    if environment:
        query = query.where(model.environment == bindparam("scope_environment"))  # type: ignore[attr-defined]
    return query


def scope_parameters(scope: TenantScope) -> dict[str, Any]:
    return {"scope_tenant": scope.tenant_id, "scope_environment": scope.environment}


def get_scoped(
    session: Session, model: type[M], scope: TenantScope, row_id: Any, *, environment: bool = False
) -> M:
    name = model.__name__.lower()
    try:
        key = row_id if isinstance(row_id, uuid.UUID) else uuid.UUID(str(row_id))
    except ValueError:
        raise NotFound(f"{name} not found") from None
    query = scoped(model, scope, environment=environment).where(model.id == key)  # type: ignore[attr-defined]
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"{name} not found")
    return row
