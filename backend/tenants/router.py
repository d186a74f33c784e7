from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from backend.auth.principal import AdminAuth, AdminOrAuditor, OperatorAuth
from backend.kit.api import Page, Paging, error_responses
from backend.kit.session import DbSession
from backend.runtime import Runtime
from backend.tenants import service
from backend.tenants.models import Tenant, TenantEnvironment
from backend.tenants.schemas import (
    ContractsOut,
    CreatedAdmin,
    CreditContract,
    EnvironmentOut,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantUpdate,
)
from backend.tokens.models import TokenType

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], responses=error_responses(400, 401, 403, 422, 429))


def _out(tenant: Tenant, environments: Sequence[TenantEnvironment]) -> TenantOut:
    envs = [EnvironmentOut.model_validate(e) for e in environments]
    return TenantOut(
        id=tenant.id, name=tenant.name, slug=tenant.slug, created_at=tenant.created_at, environments=envs
    )


def _one(session: DbSession, tenant: Tenant) -> TenantOut:
    return _out(tenant, service.environments(session, tenant.id))


@router.post("", status_code=201, response_model=TenantCreated, responses=error_responses(409))
def create_tenant(body: TenantCreate, request: Request, session: DbSession, _: OperatorAuth) -> TenantCreated:
    """Create a tenant, its first admin and its project keys; its test contracts deploy in the background."""
    runtime: Runtime = request.app.state.runtime
    tenant, admin, password = service.create_tenant(session, runtime.settings, runtime.keystore, body)
    created = CreatedAdmin(id=admin.id, email=admin.email, role=admin.role, password=password)
    return TenantCreated(**_one(session, tenant).model_dump(), admin=created)


@router.get("", response_model=Page[TenantOut])
def list_tenants(
    session: DbSession,
    _: OperatorAuth,
    paging: Annotated[Paging, Depends()],
    slug: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[TenantOut]:
    """Every tenant of the platform, oldest first (the platform operator's view)."""
    query = select(Tenant).order_by(Tenant.created_at, Tenant.id)
    if slug is not None:
        query = query.where(Tenant.slug == slug)
    tenants, meta = paging.apply(session, query)
    envs = service.environments_of(session, [t.id for t in tenants])
    return Page(data=[_out(t, envs.get(t.id, [])) for t in tenants], meta=meta)


@router.get("/me", response_model=TenantOut)
def get_my_tenant(session: DbSession, caller: AdminOrAuditor) -> TenantOut:
    tenant = session.get_one(Tenant, caller.tenant.tenant_id)
    return _one(session, tenant)


@router.patch("/me", response_model=TenantOut)
def update_my_tenant(body: TenantUpdate, session: DbSession, caller: AdminAuth) -> TenantOut:
    tenant = session.get_one(Tenant, caller.tenant.tenant_id)
    tenant.name = body.name
    session.flush()
    return _one(session, tenant)


@router.get("/me/contracts", response_model=Page[ContractsOut])
def my_contracts(
    request: Request, session: DbSession, caller: AdminOrAuditor, paging: Annotated[Paging, Depends()]
) -> Page[ContractsOut]:
    """Each environment's deployment status and contract addresses."""
    config = request.app.state.runtime.settings.chain_config()
    envs, meta = paging.apply(session, service.environments_query(caller.tenant.tenant_id))
    result = []
    for env in envs:
        credits = session.scalars(
            select(TokenType)
            .where(
                TokenType.tenant_id == env.tenant_id,
                TokenType.environment == env.environment,
                TokenType.kind == "credit",
            )
            .order_by(TokenType.created_at)
        )
        result.append(
            ContractsOut(
                environment=env.environment,
                network=env.network,
                chain_id=config.network(env.network).chain_id if env.network else None,
                status=env.status,
                failure_reason=env.failure_reason,
                factory=env.factory_address,
                rewards=env.rewards_address,
                admin=env.admin_address,
                credits=[
                    CreditContract(
                        token_id=t.id, symbol=t.symbol, address=t.contract_address, status=t.status
                    )
                    for t in credits
                ],
            )
        )
    return Page(data=result, meta=meta)
