from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select

from backend.auth import service, throttle
from backend.auth.credentials import AuthError, secret_hash
from backend.auth.models import Admin
from backend.auth.principal import (
    ADMIN,
    AUDITOR,
    AdminAuth,
    Auth,
    Principal,
    ProjectAuth,
    identify,
    project_environment,
    project_key_scheme,
)
from backend.auth.schemas import (
    AdminCreate,
    AdminCreated,
    AdminLogin,
    AdminOut,
    AdminUpdate,
    BusinessLogin,
    ManagedUserLogin,
    Me,
    NonceOut,
    PasswordChange,
    RefreshRequest,
    TokenPair,
    TokenRequest,
)
from backend.kit.api import Page, Paging, error_responses
from backend.kit.errors import PersError
from backend.kit.scope import scoped
from backend.kit.session import DbSession
from backend.runtime import Runtime
from backend.tenants.models import TenantEnvironment

router = APIRouter(prefix="/v1/auth", tags=["auth"], responses=error_responses(400, 401, 403, 422, 429))
admins = APIRouter(prefix="/v1/admins", tags=["admins"], responses=error_responses(400, 401, 403, 422, 429))
ProjectKey = Annotated[str | None, Depends(project_key_scheme)]
AdminOrAuditor = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR))]
# Sign-in and refresh need no credential (a business signs in with its key in the body): the project
# key there is optional, which OpenAPI says with an empty security requirement beside it.
OPTIONAL_CREDENTIALS: dict[str, Any] = {"security": [{}]}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _environment(session: DbSession, project_key: str | None) -> TenantEnvironment:
    if not project_key:
        raise AuthError("this call needs the X-Project-Key header", code="project_key_required")
    return project_environment(session, project_key)


@router.post("/siwe/nonce", response_model=NonceOut, status_code=201)
def siwe_nonce(request: Request, session: DbSession, caller: ProjectAuth) -> NonceOut:
    """A single-use nonce for a Sign-In with Ethereum message, valid for a few minutes. The message's URI
    must be on one of `domains`, and its Resources must include `resources` (the tenant)."""
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
        resources=[service.tenant_resource(session, env)],
    )


def _attempt(
    request: Request, kind: str, principal: str, identity: str, attempt: Callable[[], TokenPair]
) -> TokenPair:
    """One sign-in: budgeted before, counted when it fails, logged either way."""
    password = kind == "admin"
    throttle.before_sign_in(request, identity, password=password)
    try:
        pair = attempt()
    except AuthError as exc:
        throttle.sign_in_failed(request, identity)
        throttle.audit(request, kind, principal, exc.code)
        raise
    except PersError as exc:
        throttle.audit(request, kind, principal, exc.code)
        raise
    throttle.audit(request, kind, f"{principal} ({pair.subject_kind} {pair.subject_id})", "ok")
    return pair


@router.post("/token", response_model=TokenPair, openapi_extra=OPTIONAL_CREDENTIALS)
def token(
    body: TokenRequest, request: Request, session: DbSession, x_project_key: ProjectKey = None
) -> TokenPair:
    """Sign in: `admin` (email + password) or `user` (SIWE) with the project key; `business` (API key);
    `managed_user` (a business, with its own credential, opens a short session for a managed-wallet user)."""
    runtime = _runtime(request)
    if isinstance(body, AdminLogin):
        email = body.email.lower()
        admin = body

        def sign_in_admin() -> TokenPair:
            env = _environment(session, x_project_key)
            return service.login_admin(session, runtime, env, admin.email, admin.password)

        identity = f"admin:{secret_hash(str(x_project_key))[:16]}:{email}"
        return _attempt(request, "admin", email, identity, sign_in_admin)
    if isinstance(body, BusinessLogin):
        api_key = body.api_key

        def sign_in_business() -> TokenPair:
            project = project_environment(session, x_project_key) if x_project_key else None
            return service.login_business(session, runtime, api_key, project)

        prefix = api_key[:12]  # the key's public prefix, as listed; never the secret
        return _attempt(
            request, "business", prefix, f"business:{secret_hash(api_key)[:16]}", sign_in_business
        )
    if isinstance(body, ManagedUserLogin):
        user_id = body.user_id
        headers = request.headers

        def sign_in_managed_user() -> TokenPair:
            credential = (headers.get("authorization"), headers.get("x-api-key"), x_project_key)
            caller = identify(request, session, *credential)
            if caller is None:
                raise AuthError("a business credential is required", code="unauthenticated")
            return service.login_managed_user(session, runtime, caller, user_id)

        identity = f"managed_user:{throttle.client_address(request)}"
        return _attempt(request, "managed_user", str(user_id), identity, sign_in_managed_user)
    message = body.message
    signature = bytes.fromhex(body.signature[2:])

    def sign_in_user() -> TokenPair:
        env = _environment(session, x_project_key)
        return service.login_user(session, runtime, env, message, signature)

    # A SIWE signature cannot be guessed: the address budgets are what matter here.
    return _attempt(request, "user", "siwe", f"user:{throttle.client_address(request)}", sign_in_user)


@router.post("/refresh", response_model=TokenPair, openapi_extra=OPTIONAL_CREDENTIALS)
def refresh(
    body: RefreshRequest, request: Request, session: DbSession, x_project_key: ProjectKey = None
) -> TokenPair:
    """A new token pair for a refresh token. Each works once; presenting one again ends the session."""
    throttle.before_authentication(request)
    throttle.enforce(request, f"refresh:{secret_hash(body.refresh_token)[:16]}")
    project = project_environment(session, x_project_key) if x_project_key else None
    try:
        return service.refresh(session, _runtime(request), body.refresh_token, project)
    except AuthError:
        throttle.authentication_failed(request)
        raise


@router.post("/logout", status_code=204, response_class=Response, openapi_extra=OPTIONAL_CREDENTIALS)
def logout(
    body: RefreshRequest, request: Request, session: DbSession, x_project_key: ProjectKey = None
) -> Response:
    """End a session: its refresh token and every access token it issued stop working at once."""
    throttle.before_authentication(request)
    throttle.enforce(request, f"refresh:{secret_hash(body.refresh_token)[:16]}")
    project = project_environment(session, x_project_key) if x_project_key else None
    try:
        service.logout(session, body.refresh_token, project)
    except AuthError:
        throttle.authentication_failed(request)
        raise
    return Response(status_code=204)


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
    session: DbSession, caller: AdminOrAuditor, paging: Annotated[Paging, Depends()]
) -> Page[AdminOut]:
    rows, meta = paging.apply(session, scoped(Admin, caller.tenant).order_by(Admin.created_at, Admin.id))
    return Page(data=[AdminOut.model_validate(a) for a in rows], meta=meta)


@admins.post("/me/password", status_code=204, response_class=Response)
def change_password(
    body: PasswordChange, request: Request, session: DbSession, caller: AdminOrAuditor
) -> Response:
    """Change your own password (the current one is required). Every other session of yours ends at
    once; this one goes on."""
    assert caller.subject_id is not None
    identity = f"password:{caller.subject_id}"
    throttle.before_sign_in(request, identity, password=True)
    try:
        service.change_password(
            session,
            caller.tenant,
            caller.subject_id,
            body.current_password,
            body.new_password,
            caller.session_id,
        )
    except AuthError as exc:
        throttle.sign_in_failed(request, identity)
        throttle.audit(request, "password_change", str(caller.subject_id), exc.code)
        raise
    throttle.audit(request, "password_change", str(caller.subject_id), "ok")
    return Response(status_code=204)


@admins.patch("/{admin_id}", response_model=AdminOut, responses=error_responses(404, 409))
def update_admin(admin_id: str, body: AdminUpdate, session: DbSession, caller: AdminAuth) -> AdminOut:
    """Rename an admin or change their role; a role change ends their sessions at once."""
    return AdminOut.model_validate(service.update_admin(session, caller.tenant, admin_id, body))


@admins.delete("/{admin_id}", status_code=204, response_class=Response, responses=error_responses(404, 409))
def remove_admin(admin_id: str, session: DbSession, caller: AdminAuth) -> Response:
    """Remove an admin or auditor: their sessions end at once. The last TENANT_ADMIN stays."""
    service.remove_admin(session, caller.tenant, admin_id)
    return Response(status_code=204)
