"""Who is calling, as a value the routes take as a parameter. Only this module builds a
`TenantScope`, from verified credentials, and every repository query filters by it."""

import inspect
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.orm import Session

from backend.auth import throttle
from backend.auth.credentials import AuthError, read_access_token, same, secret_hash
from backend.auth.models import RefreshToken
from backend.businesses.models import ApiKey, Business
from backend.kit.db import utcnow
from backend.kit.errors import PersError
from backend.kit.session import DbSession
from backend.runtime import Runtime
from backend.tenants.models import TenantEnvironment

ADMIN, AUDITOR, BUSINESS, USER, OPERATOR, PROJECT = (
    "admin",
    "auditor",
    "business",
    "user",
    "operator",
    "project",
)
SESSION_KINDS = {ADMIN, AUDITOR, BUSINESS, USER}
LAST_USED_PRECISION = timedelta(minutes=1)
API_SCOPES = ("users:read", "users:write", "tokens:read", "transactions:write", "events:write")


class Forbidden(PersError):
    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class TenantScope:
    tenant_id: uuid.UUID
    environment: str


@dataclass(frozen=True)
class Principal:
    kind: str
    scope: TenantScope | None  # None for the platform operator only
    subject_id: uuid.UUID | None
    scopes: frozenset[str]
    rate_key: str
    session_id: uuid.UUID | None = None  # the refresh family of a session's access token

    @property
    def tenant(self) -> TenantScope:
        if self.scope is None:
            raise Forbidden("this call needs tenant credentials")
        return self.scope


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def project_environment(session: Session, project_key: str) -> TenantEnvironment:
    env = session.scalar(select(TenantEnvironment).where(TenantEnvironment.project_key == project_key))
    if env is None:
        raise AuthError("unknown project key", code="invalid_project_key")
    return env


def identify(
    request: Request,
    session: Session,
    authorization: str | None,
    api_key: str | None,
    project_key: str | None,
) -> Principal | None:
    runtime = _runtime(request)
    project = project_environment(session, project_key) if project_key else None
    principal: Principal | None = None
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("use `Authorization: Bearer <token>`", code="invalid_token")
        operator = runtime.settings.operator_token
        if operator is not None and same(token, operator.get_secret_value()):
            principal = Principal(OPERATOR, None, None, frozenset(), "operator")
        else:
            claims = read_access_token(runtime.settings.secret_jwt_key(), token)
            if claims.kind not in SESSION_KINDS:
                raise AuthError("the access token is not valid", code="invalid_token")
            if session_revoked(session, claims.session_id):
                raise AuthError("this session has ended", code="session_revoked")
            if claims.kind == BUSINESS:  # the session lives only as long as its key and business
                live_api_key(session, claims.api_key_id)
            principal = Principal(
                claims.kind,
                TenantScope(claims.tenant_id, claims.environment),
                claims.subject_id,
                frozenset(claims.scopes),
                f"session:{claims.subject_id}",
                claims.session_id,
            )
    elif api_key:
        key, business = find_api_key(session, api_key)
        scope = TenantScope(key.tenant_id, key.environment)
        principal = Principal(BUSINESS, scope, business.id, frozenset(key.scopes), f"apikey:{key.id}")
    elif project is not None:
        scope = TenantScope(project.tenant_id, project.environment)
        # The public key is shared by every user of the tenant: budgeted per key and address.
        address = throttle.client_address(request)
        principal = Principal(PROJECT, scope, None, frozenset(), f"project:{project.id}:{address}")
    same_project(project, principal.scope if principal else None)
    return principal


# Statements built once: building one per request cost more CPU than running it.
_REVOKED = (
    select(RefreshToken.id)
    .where(RefreshToken.family_id == bindparam("family"), RefreshToken.revoked_at.is_not(None))
    .limit(1)
)
_KEY_AND_BUSINESS = select(ApiKey, Business).join(Business, Business.id == ApiKey.business_id)
_KEY_BY_HASH = _KEY_AND_BUSINESS.where(ApiKey.key_hash == bindparam("key_hash"))
_KEY_BY_ID = _KEY_AND_BUSINESS.where(ApiKey.id == bindparam("key_id"))
# The key's row only if no other transaction holds it: concurrent requests with the same key all see an
# old `last_used_at`, and waiting for the first one's lock would serialise their whole transactions.
_API_KEYS = ApiKey.metadata.tables[ApiKey.__tablename__]
_STALE_KEY = (
    select(_API_KEYS.c.id)
    .where(
        _API_KEYS.c.id == bindparam("key_id"),
        or_(_API_KEYS.c.last_used_at.is_(None), _API_KEYS.c.last_used_at < bindparam("cutoff")),
    )
    .with_for_update(skip_locked=True, key_share=True)
    .scalar_subquery()
)
_TOUCH_KEY = update(_API_KEYS).where(_API_KEYS.c.id == _STALE_KEY).values(last_used_at=bindparam("now"))


def session_revoked(session: Session, session_id: uuid.UUID) -> bool:
    """Logging out, reusing a refresh token or changing an admin revokes the family: its access
    tokens stop working at once, not when they expire."""
    return session.scalar(_REVOKED, {"family": session_id}) is not None


def same_project(project: TenantEnvironment | None, scope: TenantScope | None) -> None:
    """A project key sent along with other credentials must name the same tenant and environment."""
    if project is None or scope is None:
        return
    if scope != TenantScope(project.tenant_id, project.environment):
        raise Forbidden("the project key belongs to another tenant or environment", code="tenant_mismatch")


def find_api_key(session: Session, api_key: str) -> tuple[ApiKey, Business]:
    """The live key and its active business, or the reason it cannot be used."""
    return _usable(session, _KEY_BY_HASH, {"key_hash": secret_hash(api_key)})


def live_api_key(session: Session, key_id: uuid.UUID | None) -> tuple[ApiKey, Business]:
    if key_id is None:
        raise AuthError("the access token is not valid", code="invalid_token")
    return _usable(session, _KEY_BY_ID, {"key_id": key_id})


def _usable(
    session: Session, query: Select[ApiKey, Business], params: dict[str, object]
) -> tuple[ApiKey, Business]:
    found = session.execute(query, params).first()
    if found is None:
        raise AuthError("unknown API key", code="invalid_api_key")
    key, business = found
    # The identity map holds rows weakly: kept here, the caller's business costs the request's service
    # no second query (`session.get`).
    session.info.setdefault("authenticated", []).extend(found)
    if key.revoked_at is not None:
        raise AuthError("this API key has been revoked", code="api_key_revoked")
    if business.status != "active":
        raise Forbidden("this business is suspended", code="business_suspended")
    now = utcnow()
    cutoff = now - LAST_USED_PRECISION
    if key.last_used_at is None or key.last_used_at < cutoff:  # written at most once a minute per key
        session.execute(_TOUCH_KEY, {"key_id": key.id, "cutoff": cutoff, "now": now})
    return key, business


# Declared as security schemes, so OpenAPI documents them as such (not as plain header parameters).
# Each needs its own scheme name: both API-key headers would otherwise be "APIKeyHeader", and the
# second would replace the first in the document.
bearer_scheme = HTTPBearer(auto_error=False, description="A session's access token, or the operator token.")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKey", auto_error=False, description="A business's secret key (sk_…)."
)
project_key_scheme = APIKeyHeader(
    name="X-Project-Key",
    scheme_name="ProjectKey",
    auto_error=False,
    description="A project key (pk_…): public.",
)


# The credentials that can identify each kind of caller, as the OpenAPI document names them.
SCHEMES_OF_KIND = {
    ADMIN: (bearer_scheme,),
    AUDITOR: (bearer_scheme,),
    USER: (bearer_scheme,),
    OPERATOR: (bearer_scheme,),
    BUSINESS: (bearer_scheme, api_key_scheme),
    PROJECT: (project_key_scheme,),
}


class Auth:
    """A route's access rule: which kinds of caller, and which API-key scope a business needs.

    A secret key can do at least what its tenant's public key can: a rule that admits the project key
    admits a business too, whatever its key's scopes."""

    def __init__(self, *kinds: str, scope: str | None = None) -> None:
        self.kinds, self.required_scope = set(kinds), scope
        self.project_call = self.kinds == {PROJECT}  # a public call: what is missing is the project key
        if PROJECT in self.kinds:
            if scope is not None:
                raise ValueError("what the public project key may do needs no API-key scope")
            self.kinds.add(BUSINESS)
        # The route's OpenAPI security lists exactly the schemes of these kinds: FastAPI reads the
        # dependency's parameters from this signature. The credentials themselves are read from the
        # headers, so a session sent to a project-key route is still recognised (and refused).
        schemes = {s.scheme_name: s for kind in sorted(self.kinds) for s in SCHEMES_OF_KIND[kind]}
        self.__signature__ = inspect.Signature(
            [
                inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
                inspect.Parameter("session", inspect.Parameter.KEYWORD_ONLY, annotation=DbSession),
                *(
                    inspect.Parameter(f"_{name}", inspect.Parameter.KEYWORD_ONLY, default=Depends(scheme))
                    for name, scheme in sorted(schemes.items())
                ),
            ]
        )

    def __call__(self, request: Request, session: DbSession, **_documented: object) -> Principal:
        return self.check(request, session)

    def check(self, request: Request, session: Session) -> Principal:
        # One rate-limit round trip per request: an address out of failed authentications is refused
        # (429) with good credentials (`authenticated`) and with bad ones (`credentials_refused`).
        headers = request.headers
        try:
            principal = identify(
                request,
                session,
                headers.get("authorization"),
                headers.get("x-api-key"),
                headers.get("x-project-key"),
            )
        except AuthError:
            throttle.credentials_refused(request)  # guessed keys and tokens meet 429 too
            raise
        if principal is None:
            throttle.before_authentication(request)
            if self.project_call:
                raise AuthError("this call needs the X-Project-Key header", code="project_key_required")
            raise AuthError("credentials required", code="unauthenticated")
        request.state.principal = principal  # named in the request log line
        throttle.authenticated(request, principal.rate_key)
        if principal.kind not in self.kinds:
            raise Forbidden(f"{principal.kind} credentials cannot make this call")
        needed = self.required_scope
        if principal.kind == BUSINESS and needed is not None and needed not in principal.scopes:
            raise Forbidden(f"the API key lacks the scope {needed}", code="insufficient_scope", scope=needed)
        return principal


class Pending:
    """A caller whose credentials are read but not yet checked: calling it checks them (once) in the
    calling thread, with the route's session. See `DeferredAuth`."""

    def __init__(self, auth: "DeferredAuth", request: Request) -> None:
        self.auth, self.request = auth, request
        self.principal: Principal | None = None

    def __call__(self, session: Session) -> Principal:
        if self.principal is None:
            self.principal = self.auth.check(self.request, session)
        return self.principal


class DeferredAuth(Auth):
    """`Auth` checked by the route itself, in the same trip through the thread pool as its work and
    commit (`Pending`): on the hottest routes, waking a pool thread costs as much as a query. The
    answers keep their order: the route calls the caller before anything else, and a request refused
    before that (invalid input) has its credentials checked first (`check_apart`, by the app's error
    handlers), so bad credentials are told before anything about the input. It takes no session: the
    route opens its own (`then_commit`)."""

    def __init__(self, *kinds: str, scope: str | None = None) -> None:
        super().__init__(*kinds, scope=scope)
        parameters = [p for p in self.__signature__.parameters.values() if p.name != "session"]
        self.__signature__ = self.__signature__.replace(parameters=parameters)

    async def __call__(self, request: Request, **_documented: object) -> Pending:  # type: ignore[override]
        request.state.deferred_auth = self  # the rule, not the `Pending`: no cycle through the request
        return Pending(self, request)

    def check(self, request: Request, session: Session) -> Principal:
        request.state.auth_checked = True
        return super().check(request, session)

    def check_apart(self, request: Request) -> None:
        """The check of a request refused before its route called the caller: in a session of its
        own, rolled back (the request's is closed by then)."""
        with _runtime(request).sessions() as session:
            self.check(request, session)


OperatorAuth = Annotated[Principal, Depends(Auth(OPERATOR))]
AdminAuth = Annotated[Principal, Depends(Auth(ADMIN))]
AdminOrAuditor = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR))]
AnySession = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS, USER))]
ProjectAuth = Annotated[Principal, Depends(Auth(PROJECT))]
