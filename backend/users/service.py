"""Customers: found or created by wallet, external id or email; a managed wallet for those without one.
Like tokens, users belong to one environment: test keys never see live customers.

Who sees what (docs/adr/0004): the wallet is the one tenant-wide identifier anyone may look up by; a
business's external ids and emails live on its own `UserLink` and find only its own customers; the
tenant-wide email and external id are set by admins. A business lists and reads only linked users."""

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import Select, bindparam, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit.errors import Conflict, NotFound, PersError
from backend.kit.keystore import Keystore
from backend.kit.scope import get_scoped, scope_parameters, scoped, scoped_template
from backend.users.models import User, UserLink
from backend.users.schemas import ProfileUpdate, UserFind, UserUpdate

IDENTIFIERS = ("wallet_address", "external_id", "email")


def wallet_context(user_id: uuid.UUID) -> str:
    return f"user:{user_id}:wallet"


def _given(data: UserFind | UserUpdate) -> dict[str, Any]:
    values = {
        "wallet_address": getattr(data, "wallet_address", None),
        "external_id": data.external_id,
        "email": data.email.lower() if data.email else None,
    }
    return {k: v for k, v in values.items() if v is not None}


def _conflict(message: str = "these identifiers belong to different users") -> Conflict:
    return Conflict(message, code="identity_conflict")


def find_or_create(
    session: Session,
    keystore: Keystore,
    scope: TenantScope,
    data: UserFind,
    business_id: uuid.UUID | None = None,
) -> tuple[User, UserLink | None, bool]:
    """The user the identifiers name (True when created), and for a business its link to them. Other
    identifiers in the request must not belong to someone else."""
    given = _given(data)
    if not given:
        raise PersError("give walletAddress, externalId or email", code="missing_identifier", status=422)
    if business_id is None:
        user, created = _find_or_create_as_tenant(session, keystore, scope, data, given)
        return user, None, created
    return _find_or_create_as_business(session, keystore, scope, data, given, business_id)


def _find_or_create_as_tenant(
    session: Session, keystore: Keystore, scope: TenantScope, data: UserFind, given: dict[str, Any]
) -> tuple[User, bool]:
    """Admins (and a wallet signing itself in) match and fill the tenant-wide identifiers."""
    conditions = [getattr(User, field) == value for field, value in given.items()]
    matches = {
        u.id: u for u in session.scalars(scoped(User, scope, environment=True).where(or_(*conditions)))
    }
    if len(matches) > 1:
        raise _conflict()
    if matches:
        (user,) = matches.values()
        _fill(user, given)
        _flush(session)
        return user, False
    user = _new_user(session, keystore, scope, data.name, given)
    user.attributes = data.attributes or {}
    _flush(session)
    return user, True


def _find_or_create_as_business(
    session: Session,
    keystore: Keystore,
    scope: TenantScope,
    data: UserFind,
    given: dict[str, Any],
    business_id: uuid.UUID,
) -> tuple[User, UserLink, bool]:
    """A business matches the wallet tenant-wide, its own external id and email in its own links."""
    own = {k: v for k, v in given.items() if k != "wallet_address"}
    found: set[uuid.UUID] = set()
    if "wallet_address" in given:
        by_wallet = user_by_wallet(session, scope, given["wallet_address"])
        found |= {by_wallet.id} if by_wallet else set()
    if own:
        conditions = [getattr(UserLink, field) == value for field, value in own.items()]
        query = _links(scope, business_id).where(or_(*conditions))
        found |= {link.user_id for link in session.scalars(query)}
    if len(found) > 1:
        raise _conflict()
    if found:
        user = get_user(session, scope, found.pop())
        link = link_for(session, business_id, user.id)
        created = False
        if link is None:
            link = _new_link(session, scope, business_id, user.id, data, created_user=False)
    else:
        wallet = {k: v for k, v in given.items() if k == "wallet_address"}
        user = _new_user(session, keystore, scope, data.name, wallet)
        _flush(session)
        link = _new_link(session, scope, business_id, user.id, data, created_user=True)
        created = True
    _fill(link, own)
    _flush(session)
    return user, link, created


def _fill(record: User | UserLink, values: dict[str, Any]) -> None:
    for field, value in values.items():
        current = getattr(record, field)
        if current is not None and current != value:
            raise Conflict(
                f"the user's {to_camel(field)} is already set to another value",
                code="identity_conflict",
                field=to_camel(field),
            )
        setattr(record, field, value)


def _new_user(
    session: Session, keystore: Keystore, scope: TenantScope, name: str | None, given: dict[str, Any]
) -> User:
    user = User(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        name=name,
        attributes={},
        profile={},
        **given,
    )
    if user.wallet_address is None:
        user.wallet_address, user.wallet_key_sealed = keystore.new_account(wallet_context(user.id))
    session.add(user)
    return user


def _new_link(
    session: Session,
    scope: TenantScope,
    business_id: uuid.UUID,
    user_id: uuid.UUID,
    data: UserFind,
    *,
    created_user: bool,
) -> UserLink:
    link = UserLink(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        business_id=business_id,
        user_id=user_id,
        attributes=data.attributes or {},
        created_user=created_user,
    )
    session.add(link)
    return link


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took an identifier first
        raise Conflict("the user was changed concurrently; retry", code="identity_conflict") from exc


def link_user(session: Session, scope: TenantScope, business_id: uuid.UUID, user_id: uuid.UUID) -> UserLink:
    """The business's link to a user it serves, made on first use (the relay calls this)."""
    link = link_for(session, business_id, user_id)
    if link is None:
        link = _new_link(session, scope, business_id, user_id, UserFind(), created_user=False)
        _flush(session)
    return link


def _links(scope: TenantScope, business_id: uuid.UUID) -> Select[UserLink]:
    return scoped(UserLink, scope, environment=True).where(UserLink.business_id == business_id)


def link_for(session: Session, business_id: uuid.UUID, user_id: uuid.UUID) -> UserLink | None:
    return session.scalar(
        select(UserLink).where(UserLink.business_id == business_id, UserLink.user_id == user_id)
    )


def links_of(session: Session, user_ids: Sequence[uuid.UUID]) -> list[UserLink]:
    if not user_ids:
        return []
    query = select(UserLink).where(UserLink.user_id.in_(user_ids))
    return list(session.scalars(query.order_by(UserLink.created_at, UserLink.id)))


_BY_WALLET = scoped_template(User, environment=True).where(User.wallet_address == bindparam("wallet"))
_ID_BY_WALLET = _BY_WALLET.with_only_columns(User.id)


def user_by_wallet(session: Session, scope: TenantScope, address: str) -> User | None:
    return session.scalar(_BY_WALLET, {**scope_parameters(scope), "wallet": address})


def user_id_by_wallet(session: Session, scope: TenantScope, address: str) -> uuid.UUID | None:
    """The relay looks every operation's recipient up: its id only, on the session's connection (the
    session's ORM execution cost 100 µs more of the request's CPU). It does not flush the session
    first: the relay's requests add no user before it."""
    found: uuid.UUID | None = (
        session.connection().execute(_ID_BY_WALLET, {**scope_parameters(scope), "wallet": address}).scalar()
    )
    return found


def get_user(session: Session, scope: TenantScope, user_id: str | uuid.UUID) -> User:
    return get_scoped(session, User, scope, user_id, environment=True)


def get_linked_user(
    session: Session, scope: TenantScope, business_id: uuid.UUID, user_id: str | uuid.UUID
) -> tuple[User, UserLink]:
    """A user as a business may read it: only one it created or served; others are not found."""
    user = get_user(session, scope, user_id)
    link = link_for(session, business_id, user.id)
    if link is None:
        raise NotFound("user not found")
    return user, link


def _literal(q: str) -> str:
    """The search text is literal: its % and _ are not wildcards."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(
    scope: TenantScope,
    wallet: str | None,
    external_id: str | None,
    email: str | None,
    q: str | None,
    business_id: uuid.UUID | None = None,
) -> Select[User]:
    """Users of the environment; for a business, only its own, matched on its own records."""
    query = scoped(User, scope, environment=True)
    if wallet:
        query = query.where(User.wallet_address == wallet)
    if business_id is not None:
        query = query.join(UserLink, (UserLink.user_id == User.id) & (UserLink.business_id == business_id))
        record: type[User] | type[UserLink] = UserLink
    else:
        record = User
    if external_id:
        query = query.where(record.external_id == external_id)
    if email:
        query = query.where(record.email == email.lower())
    if q:
        pattern = _literal(q)
        columns = (User.name, record.email, record.external_id)
        matched = or_(*(c.ilike(pattern, escape="\\") for c in columns))
        if business_id is None:  # admins find users by any business's records too
            by_link = (UserLink.user_id == User.id) & or_(
                UserLink.email.ilike(pattern, escape="\\"), UserLink.external_id.ilike(pattern, escape="\\")
            )
            matched = or_(matched, exists().where(by_link))
        query = query.where(matched)
    return query.order_by(User.created_at, User.id)


def update_user(session: Session, user: User, data: UserUpdate, link: UserLink | None) -> User:
    """An admin changes the tenant's record (link None); a business its own record of the user."""
    changed = data.model_fields_set
    if link is not None and "name" in changed:
        raise PersError("a business cannot rename a user", code="field_not_allowed", status=422, field="name")
    record: User | UserLink = link if link is not None else user
    if "external_id" in changed:
        record.external_id = data.external_id
    if "email" in changed:
        record.email = data.email.lower() if data.email else None
    if "attributes" in changed:
        record.attributes = data.attributes or {}
    if "name" in changed:
        user.name = data.name
    _flush(session)
    return user


def update_profile(session: Session, user: User, data: ProfileUpdate) -> User:
    changed = data.model_fields_set
    if "name" in changed:
        user.name = data.name
    if "profile" in changed:
        user.profile = data.profile or {}
    session.flush()
    return user
