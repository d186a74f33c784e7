from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from backend.auth import service
from backend.auth.credentials import AuthError, secret_hash
from backend.auth.models import Admin
from backend.auth.principal import (
    ADMIN,
    AUDITOR,
    AdminAuth,
    Auth,
    Principal,
    ProjectAuth,
    project_environment,
    project_key_scheme,
)
from backend.auth.schemas import (
    AdminCreate,
    AdminCreated,
    AdminLogin,
    AdminOut,
    BusinessLogin,
    Me,
    NonceOut,
    RefreshRequest,
    TokenPair,
    TokenRequest,
)
from backend.kit.api import Page, Paging, error_responses
from backend.kit.scope import scoped
from backend.kit.session import DbSession
from backend.runtime import Runtime
from backend.tenants.models import TenantEnvironment

router = APIRouter(prefix="/v1/auth", tags=["auth"], responses=error_responses(400, 401, 403, 422, 429))
admins = APIRouter(prefix="/v1/admins", tags=["admins"], responses=error_responses(400, 401, 403, 422, 429))
ProjectKey = Annotated[str | None, Depends(project_key_scheme)]
# Sign-in and refresh need no credential (a business signs in with its key in the body): the project
# key there is optional, which OpenAPI says with an empty security requirement beside it.
OPTIONAL_CREDENTIALS: dict[str, Any] = {"security": [{}]}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _environment(session: DbSession, project_key: str | None) -> TenantEnvironment:
    if not project_key:
        raise AuthError("this sign-in needs the X-Project-Key header", code="project_key_required")
    return project_environment(session, project_key)


@router.post("/siwe/nonce", response_model=NonceOut, status_code=201)
def siwe_nonce(request: Request, session: DbSession, caller: ProjectAuth) -> NonceOut:
    """A single-use nonce for a Sign-In with Ethereum message, valid for a few minutes."""
    runtime = _runtime(request)
    env = session.scalar(
        select(TenantEnvironment).where(
            TenantEnvironment.tenant_id == caller.tenant.tenant_id,
            TenantEnvironment.environment == caller.tenant.environment,
        )
    )
    assert env is not None
    nonce = service.new_nonce(session, runtime, env)
    return NonceOut(
        nonce=nonce.nonce,
        expires_at=nonce.expires_at,
        chain_id=service.chain_id(runtime, env),
        domains=runtime.settings.siwe_domains,
    )


def _throttle(request: Request, key: str) -> None:
    """Sign-in calls carry no credential yet: budget them by what they target, and by client address."""
    client = request.client.host if request.client else "unknown"
    _runtime(request).enforce_rate_limits(key, client)


@router.post("/token", response_model=TokenPair, openapi_extra=OPTIONAL_CREDENTIALS)
def token(
    body: TokenRequest, request: Request, session: DbSession, x_project_key: ProjectKey = None
) -> TokenPair:
    """Sign in: `admin` (email + password) or `user` (SIWE) with the project key; `business` (API key)."""
    runtime = _runtime(request)
    if isinstance(body, AdminLogin):
        _throttle(request, f"signin:admin:{x_project_key}:{body.email.lower()}")
        env = _environment(session, x_project_key)
        return service.login_admin(session, runtime, env, body.email, body.password)
    if isinstance(body, BusinessLogin):
        _throttle(request, f"signin:business:{secret_hash(body.api_key)[:16]}")
        project = project_environment(session, x_project_key) if x_project_key else None
        return service.login_business(session, runtime, body.api_key, project)
    # A SIWE signature cannot be guessed: only the per-address budget matters here.
    _throttle(request, f"signin:user:{request.client.host if request.client else 'unknown'}")
    env = _environment(session, x_project_key)
    return service.login_user(session, runtime, env, body.message, bytes.fromhex(body.signature[2:]))


@router.post("/refresh", response_model=TokenPair, openapi_extra=OPTIONAL_CREDENTIALS)
def refresh(
    body: RefreshRequest, request: Request, session: DbSession, x_project_key: ProjectKey = None
) -> TokenPair:
    """A new token pair for a refresh token. Each works once; presenting one again ends the session."""
    _throttle(request, f"refresh:{secret_hash(body.refresh_token)[:16]}")
    project = project_environment(session, x_project_key) if x_project_key else None
    return service.refresh(session, _runtime(request), body.refresh_token, project)


@router.get("/me", response_model=Me)
def me(caller: Annotated[Principal, Depends(Auth("admin", "auditor", "business", "user", "operator"))]) -> Me:
    scope = caller.scope
    return Me(
        kind=caller.kind,
        subject_id=caller.subject_id,
        tenant_id=scope.tenant_id if scope else None,
        environment=scope.environment if scope else None,
        scopes=sorted(caller.scopes),
    )


@admins.post("", status_code=201, response_model=AdminCreated, responses=error_responses(409))
def create_admin(body: AdminCreate, session: DbSession, caller: AdminAuth) -> AdminCreated:
    admin, password = service.create_admin(session, caller.tenant, body)
    return AdminCreated(**AdminOut.model_validate(admin).model_dump(), password=password)


@admins.get("", response_model=Page[AdminOut])
def list_admins(
    session: DbSession,
    caller: Annotated[Principal, Depends(Auth(ADMIN, AUDITOR))],
    paging: Annotated[Paging, Depends()],
) -> Page[AdminOut]:
    rows, meta = paging.apply(session, scoped(Admin, caller.tenant).order_by(Admin.created_at, Admin.id))
    return Page(data=[AdminOut.model_validate(a) for a in rows], meta=meta)
