"""Customers: found or created by wallet, external id or email; a managed wallet for those without one.
Like tokens, users belong to one environment: test keys never see live customers."""

import uuid
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import Select, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit.errors import Conflict, PersError
from backend.kit.keystore import Keystore
from backend.kit.scope import get_scoped, scoped
from backend.users.models import User
from backend.users.schemas import UserFind, UserUpdate


def wallet_context(user_id: uuid.UUID) -> str:
    return f"user:{user_id}:wallet"


def find_or_create(
    session: Session, keystore: Keystore, scope: TenantScope, data: UserFind
) -> tuple[User, bool]:
    """The user the first identifier names (True when created). Other identifiers in the request must
    not belong to someone else."""
    identifiers = {
        "wallet_address": data.wallet_address,
        "external_id": data.external_id,
        "email": data.email.lower() if data.email else None,
    }
    given = {k: v for k, v in identifiers.items() if v is not None}
    if not given:
        raise PersError("give walletAddress, externalId or email", code="missing_identifier", status=422)
    matches = {
        u.id: u for u in session.scalars(scoped(User, scope, environment=True).where(or_(*_match(given))))
    }
    if len(matches) > 1:
        raise Conflict("these identifiers belong to different users", code="identity_conflict")
    if matches:
        (user,) = matches.values()
        for field, value in given.items():
            current = getattr(user, field)
            if current is not None and current != value:
                raise Conflict(
                    f"the user's {to_camel(field)} is already set to another value",
                    code="identity_conflict",
                    field=to_camel(field),
                )
            setattr(user, field, value)
        session.flush()
        return user, False
    user = User(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        name=data.name,
        attributes=data.attributes or {},
        **given,
    )
    if user.wallet_address is None:
        user.wallet_address, user.wallet_key_sealed = keystore.new_account(wallet_context(user.id))
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request created the same user
        raise Conflict("the user was created concurrently; retry", code="identity_conflict") from exc
    return user, True


def _match(given: dict[str, Any]) -> list[Any]:
    return [getattr(User, field) == value for field, value in given.items()]


def user_by_wallet(session: Session, scope: TenantScope, address: str) -> User | None:
    return session.scalar(scoped(User, scope, environment=True).where(User.wallet_address == address))


def get_user(session: Session, scope: TenantScope, user_id: str | uuid.UUID) -> User:
    return get_scoped(session, User, scope, user_id, environment=True)


def search(
    scope: TenantScope, wallet: str | None, external_id: str | None, email: str | None, q: str | None
) -> Select[User]:
    query = scoped(User, scope, environment=True)
    if wallet:
        query = query.where(User.wallet_address == wallet)
    if external_id:
        query = query.where(User.external_id == external_id)
    if email:
        query = query.where(User.email == email.lower())
    if q:
        # The search text is literal: its % and _ are not wildcards.
        literal = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        columns = (User.name, User.email, User.external_id)
        query = query.where(or_(*(c.ilike(f"%{literal}%", escape="\\") for c in columns)))
    return query.order_by(User.created_at, User.id)


def update_user(session: Session, user: User, data: UserUpdate) -> User:
    changed = data.model_fields_set
    if "name" in changed:
        user.name = data.name
    if "attributes" in changed:
        user.attributes = data.attributes or {}
    session.flush()
    return user
