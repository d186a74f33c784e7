from fastapi import APIRouter, Request
from sqlalchemy import select

from backend.auth.principal import AdminAuth, AdminOrAuditor, OperatorAuth
from backend.kit.api import error_responses
from backend.kit.session import DbSession
from backend.runtime import Runtime
from backend.tenants import service
from backend.tenants.models import Tenant
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


def _out(session: DbSession, tenant: Tenant) -> TenantOut:
    envs = [EnvironmentOut.model_validate(e) for e in service.environments(session, tenant.id)]
    return TenantOut(
        id=tenant.id, name=tenant.name, slug=tenant.slug, created_at=tenant.created_at, environments=envs
    )


@router.post("", status_code=201, response_model=TenantCreated, responses=error_responses(409))
def create_tenant(body: TenantCreate, request: Request, session: DbSession, _: OperatorAuth) -> TenantCreated:
    """Create a tenant, its first admin and its project keys; its test contracts deploy in the background."""
    runtime: Runtime = request.app.state.runtime
    tenant, admin, password = service.create_tenant(session, runtime.settings, runtime.keystore, body)
    created = CreatedAdmin(id=admin.id, email=admin.email, role=admin.role, password=password)
    return TenantCreated(**_out(session, tenant).model_dump(), admin=created)


@router.get("/me", response_model=TenantOut)
def get_my_tenant(session: DbSession, caller: AdminOrAuditor) -> TenantOut:
    tenant = session.get_one(Tenant, caller.tenant.tenant_id)
    return _out(session, tenant)


@router.patch("/me", response_model=TenantOut)
def update_my_tenant(body: TenantUpdate, session: DbSession, caller: AdminAuth) -> TenantOut:
    tenant = session.get_one(Tenant, caller.tenant.tenant_id)
    tenant.name = body.name
    session.flush()
    return _out(session, tenant)


@router.get("/me/contracts", response_model=list[ContractsOut])
def my_contracts(request: Request, session: DbSession, caller: AdminOrAuditor) -> list[ContractsOut]:
    """Each environment's deployment status and contract addresses."""
    config = request.app.state.runtime.settings.chain_config()
    result = []
    for env in service.environments(session, caller.tenant.tenant_id):
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
    return result
