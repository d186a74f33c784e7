"""Sign-in for admins (email + password), users (SIWE) and businesses (API key); sessions as short
JWT access tokens plus rotating refresh tokens whose reuse revokes the whole family."""

import secrets
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth import siwe
from backend.auth.credentials import (
    AccessClaims,
    AuthError,
    burn_password_check,
    expiry,
    generate_password,
    hash_password,
    issue_access_token,
    needs_rehash,
    new_secret,
    password_matches,
    secret_hash,
)
from backend.auth.models import Admin, RefreshToken, SiweNonce
from backend.auth.principal import (
    ADMIN,
    AUDITOR,
    BUSINESS,
    USER,
    Forbidden,
    Principal,
    TenantScope,
    find_api_key,
    same_project,
)
from backend.auth.schemas import AdminCreate, AdminUpdate, TokenPair
from backend.businesses.models import ApiKey, Business
from backend.kit.db import unit_of_work, utcnow
from backend.kit.errors import Conflict, NotFound, PersError
from backend.kit.scope import get_scoped
from backend.runtime import Runtime
from backend.tenants.models import Tenant, TenantEnvironment
from backend.users import service as users
from backend.users.models import User, UserLink
from backend.users.schemas import UserFind

ADMIN_KINDS = {"TENANT_ADMIN": ADMIN, "AUDITOR": AUDITOR}


def issue_session(
    session: Session,
    runtime: Runtime,
    kind: str,
    subject_id: uuid.UUID,
    scope: TenantScope,
    scopes: tuple[str, ...] = (),
    family: RefreshToken | None = None,
    api_key_id: uuid.UUID | None = None,
    lifetime: int | None = None,
) -> TokenPair:
    """A new access token and refresh token: a new session, or the next link of `family`'s. However
    often it is refreshed, a session ends `lifetime` (default `session_lifetime`) after its sign-in."""
    settings = runtime.settings
    family_id = family.family_id if family else uuid.uuid4()
    session_end = family.session_expires_at if family else expiry(lifetime or settings.session_lifetime)
    refresh_end = min(expiry(settings.refresh_token_ttl), session_end)
    access_end = min(expiry(settings.access_token_ttl), session_end)
    claims = AccessClaims(
        kind, subject_id, scope.tenant_id, scope.environment, scopes, access_end, family_id, api_key_id
    )
    refresh = new_secret("rt")
    session.add(
        RefreshToken(
            id=uuid.uuid4(),
            tenant_id=scope.tenant_id,
            family_id=family_id,
            token_hash=secret_hash(refresh),
            environment=scope.environment,
            subject_kind=kind,
            subject_id=subject_id,
            scopes=list(scopes),
            api_key_id=api_key_id,
            expires_at=refresh_end,
            session_expires_at=session_end,
        )
    )
    session.flush()
    return TokenPair(
        access_token=issue_access_token(settings.secret_jwt_key(), claims),
        expires_in=max(0, (access_end - utcnow()) // timedelta(seconds=1)),
        refresh_token=refresh,
        subject_kind=kind,
        subject_id=subject_id,
    )


def login_admin(
    session: Session, runtime: Runtime, env: TenantEnvironment, email: str, password: str
) -> TokenPair:
    admin = session.scalar(
        select(Admin).where(Admin.tenant_id == env.tenant_id, Admin.email == email.lower())
    )
    if admin is None:
        burn_password_check(password)
        raise AuthError("wrong email or password", code="invalid_credentials")
    if not password_matches(admin.password_hash, password):
        raise AuthError("wrong email or password", code="invalid_credentials")
    if needs_rehash(admin.password_hash):  # made with older parameters
        admin.password_hash = hash_password(password)
    scope = TenantScope(env.tenant_id, env.environment)
    return issue_session(session, runtime, ADMIN_KINDS[admin.role], admin.id, scope)


def login_business(
    session: Session, runtime: Runtime, api_key: str, project: TenantEnvironment | None
) -> TokenPair:
    key, business = find_api_key(session, api_key)
    scope = TenantScope(key.tenant_id, key.environment)
    same_project(project, scope)
    return issue_session(session, runtime, BUSINESS, business.id, scope, tuple(key.scopes), api_key_id=key.id)


def login_managed_user(
    session: Session, runtime: Runtime, caller: Principal, user_id: uuid.UUID
) -> TokenPair:
    """A session for a managed-wallet user the calling business serves (docs/adr/0004): it ends with
    its access token, so the business opens a new one rather than holding a long-lived session."""
    if caller.kind != BUSINESS:
        raise Forbidden("a business opens a managed user's session", code="business_credential_required")
    if "users:write" not in caller.scopes:
        raise Forbidden(
            "the API key lacks the scope users:write", code="insufficient_scope", scope="users:write"
        )
    scope = caller.tenant
    served = select(UserLink.id).where(UserLink.business_id == caller.subject_id, UserLink.user_id == user_id)
    user = session.get(User, user_id)
    if user is None or (user.tenant_id, user.environment) != (scope.tenant_id, scope.environment):
        raise Forbidden("the business does not serve this user", code="user_not_served")
    if session.scalar(served) is None:
        raise Forbidden("the business does not serve this user", code="user_not_served")
    if user.wallet_key_sealed is None:
        raise Forbidden(
            "this user keeps their own wallet: they sign in with it (SIWE)", code="user_not_managed"
        )
    return issue_session(session, runtime, USER, user.id, scope, lifetime=runtime.settings.access_token_ttl)


def new_nonce(session: Session, runtime: Runtime, env: TenantEnvironment) -> SiweNonce:
    nonce = SiweNonce(
        nonce=secrets.token_hex(8),
        tenant_id=env.tenant_id,
        environment=env.environment,
        expires_at=expiry(runtime.settings.siwe_nonce_ttl),
    )
    session.add(nonce)
    session.flush()
    return nonce


def tenant_resource(session: Session, env: TenantEnvironment) -> str:
    """The Resources: entry naming the tenant, so the wallet shows which program the user signs in to
    and a message made for one tenant's front end does not sign in to another."""
    tenant = session.get(Tenant, env.tenant_id)
    assert tenant is not None
    return f"urn:pers:tenant:{tenant.slug}"


def chain_id(runtime: Runtime, env: TenantEnvironment) -> int:
    if env.network is None:
        raise PersError(
            f"the {env.environment} environment has no network", code="environment_not_configured", status=409
        )
    return runtime.settings.chain_config().network(env.network).chain_id


def login_user(
    session: Session, runtime: Runtime, env: TenantEnvironment, message: str, signature: bytes
) -> TokenPair:
    parsed = siwe.parse(message)
    if parsed.domain not in runtime.settings.siwe_domains:
        raise siwe.SiweError(f"the message is for {parsed.domain!r}", code="siwe_domain_mismatch")
    _check_uri(parsed)
    verified = siwe.verify(
        message, signature, domain=parsed.domain, chain_id=chain_id(runtime, env), now=utcnow()
    )
    _consume_nonce(session, env, verified.nonce)
    if tenant_resource(session, env) not in verified.resources:
        raise siwe.SiweError("the message must name the tenant under Resources", code="siwe_tenant_mismatch")
    scope = TenantScope(env.tenant_id, env.environment)
    user, _, _ = users.find_or_create(
        session, runtime.keystore, scope, UserFind(wallet_address=verified.address)
    )
    return issue_session(session, runtime, USER, user.id, scope)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _check_uri(message: siwe.SiweMessage) -> None:
    """The URI the wallet shows must be on the message's (allowed) domain, by the scheme the message
    names; https when it names none, or http too on a loopback host (a developer's machine)."""
    uri = urlsplit(message.uri)
    if message.scheme is not None:
        schemes = {message.scheme.lower()}
    elif urlsplit(f"//{message.domain}").hostname in LOOPBACK_HOSTS:
        schemes = {"https", "http"}
    else:
        schemes = {"https"}
    if uri.scheme.lower() not in schemes or uri.netloc.lower() != message.domain.lower():
        raise siwe.SiweError(
            f"the message's URI must be on {message.domain} by {' or '.join(sorted(schemes))}",
            code="siwe_uri_mismatch",
        )


def _consume_nonce(session: Session, env: TenantEnvironment, nonce: str) -> None:
    found = session.get(SiweNonce, nonce)
    if found is None or (found.tenant_id, found.environment) != (env.tenant_id, env.environment):
        raise AuthError("unknown sign-in nonce", code="siwe_nonce_unknown")
    if found.used_at is not None:
        raise AuthError("this sign-in nonce was already used", code="siwe_nonce_used")
    now = utcnow()
    if found.expires_at <= now:
        raise AuthError("this sign-in nonce has expired", code="siwe_nonce_expired")
    # Conditional on still being unused, so two concurrent sign-ins cannot both take it.
    taken = session.execute(
        update(SiweNonce).where(SiweNonce.nonce == nonce, SiweNonce.used_at.is_(None)).values(used_at=now)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("this sign-in nonce was already used", code="siwe_nonce_used")


def refresh(session: Session, runtime: Runtime, token: str, project: TenantEnvironment | None) -> TokenPair:
    row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == secret_hash(token)))
    if row is None:
        raise AuthError("unknown refresh token", code="invalid_refresh_token")
    same_project(project, TenantScope(row.tenant_id, row.environment))
    now = utcnow()
    if row.revoked_at is not None:
        raise AuthError("this session has been revoked", code="refresh_token_revoked")
    if row.used_at is not None:
        _revoke_family(runtime, row.family_id, now)
        raise AuthError("refresh token reused; the session is revoked", code="refresh_token_reused")
    if row.expires_at <= now:
        raise AuthError("the refresh token has expired", code="refresh_token_expired")
    claimed = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # presented twice at once: treat as reuse
        _revoke_family(runtime, row.family_id, now)
        raise AuthError("refresh token reused; the session is revoked", code="refresh_token_reused")
    _check_still_allowed(session, row)
    scope = TenantScope(row.tenant_id, row.environment)
    return issue_session(
        session,
        runtime,
        row.subject_kind,
        row.subject_id,
        scope,
        tuple(row.scopes),
        row,
        row.api_key_id,
    )


def logout(session: Session, token: str, project: TenantEnvironment | None) -> None:
    """Ends the refresh token's session: the refresh family and its access tokens."""
    row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == secret_hash(token)))
    if row is None:
        raise AuthError("unknown refresh token", code="invalid_refresh_token")
    same_project(project, TenantScope(row.tenant_id, row.environment))
    _revoke(session, RefreshToken.family_id == row.family_id)


def _revoke(session: Session, which: ColumnElement[bool]) -> None:
    session.execute(
        update(RefreshToken).where(which, RefreshToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )


def end_sessions_of(session: Session, subject_id: uuid.UUID, keep: uuid.UUID | None = None) -> None:
    """Every session of this subject (but `keep`) ends now, access tokens included."""
    _revoke(session, (RefreshToken.subject_id == subject_id) & (RefreshToken.family_id != keep))


def _revoke_family(runtime: Runtime, family_id: uuid.UUID, now: datetime) -> None:
    """A rotated token came back: whoever holds the family may be an attacker, so the session ends. In a
    transaction of its own, since the request's is rolled back with the error."""
    with unit_of_work(runtime.sessions) as own:
        own.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


def _check_still_allowed(session: Session, row: RefreshToken) -> None:
    """The subject must still exist; a business must be active and its API key not revoked."""
    if row.subject_kind in (ADMIN, AUDITOR):
        admin = session.get(Admin, row.subject_id)
        if admin is None or ADMIN_KINDS[admin.role] != row.subject_kind:
            raise AuthError("this admin no longer exists", code="refresh_token_revoked")
    elif row.subject_kind == BUSINESS:
        key = session.get(ApiKey, row.api_key_id) if row.api_key_id else None
        business = session.get(Business, row.subject_id)
        if key is None or key.revoked_at is not None or business is None or business.status != "active":
            raise AuthError(
                "the API key or business of this session is no longer active", code="refresh_token_revoked"
            )


def create_admin(session: Session, scope: TenantScope, data: AdminCreate) -> tuple[Admin, str | None]:
    email = data.email.lower()
    if session.scalar(select(Admin.id).where(Admin.tenant_id == scope.tenant_id, Admin.email == email)):
        raise Conflict("an admin with this email exists", code="email_taken")
    generated = None if data.password else generate_password()
    admin = Admin(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        email=email,
        role=data.role,
        name=data.name,
        password_hash=hash_password(data.password or generated or ""),
    )
    session.add(admin)
    try:
        session.flush()
    except IntegrityError as exc:  # created concurrently
        raise Conflict("an admin with this email exists", code="email_taken") from exc
    return admin, generated


def get_admin(session: Session, scope: TenantScope, admin_id: str) -> Admin:
    return get_scoped(session, Admin, scope, admin_id)


def _other_admins(session: Session, admin: Admin) -> int:
    query = select(func.count()).where(
        Admin.tenant_id == admin.tenant_id, Admin.role == "TENANT_ADMIN", Admin.id != admin.id
    )
    return session.scalar(query) or 0


def _keep_one_admin(session: Session, admin: Admin) -> None:
    if admin.role == "TENANT_ADMIN" and _other_admins(session, admin) == 0:
        raise Conflict("a tenant keeps at least one TENANT_ADMIN", code="last_admin")


def update_admin(session: Session, scope: TenantScope, admin_id: str, data: AdminUpdate) -> Admin:
    """Rename, or change the role: a role change ends the admin's sessions (they sign in again)."""
    admin = get_admin(session, scope, admin_id)
    if "name" in data.model_fields_set:
        admin.name = data.name
    if data.role is not None and data.role != admin.role:
        _keep_one_admin(session, admin)
        admin.role = data.role
        end_sessions_of(session, admin.id)
    session.flush()
    return admin


def remove_admin(session: Session, scope: TenantScope, admin_id: str) -> None:
    admin = get_admin(session, scope, admin_id)
    _keep_one_admin(session, admin)
    end_sessions_of(session, admin.id)
    session.delete(admin)
    session.flush()


def change_password(
    session: Session, scope: TenantScope, admin_id: uuid.UUID, current: str, new: str, keep: uuid.UUID | None
) -> None:
    """With the current password (a stolen access token alone cannot lock the owner out); every other
    session of the admin ends at once, and the one making the change goes on."""
    admin = session.get(Admin, admin_id)
    if admin is None or admin.tenant_id != scope.tenant_id:
        raise NotFound("admin not found")
    if not password_matches(admin.password_hash, current):
        raise AuthError("the current password is wrong", code="invalid_credentials")
    admin.password_hash = hash_password(new)
    end_sessions_of(session, admin.id, keep)
    session.flush()
