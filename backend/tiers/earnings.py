"""Lifetime earnings, counted as the chain confirms: the indexer's confirmations call `confirmed` in
the transaction that moves operations to `confirmed`, which adds each credit mint to its recipient's
running total (a confirmed operation is at a safe depth, so the count is final), then grants the
status of every tier whose threshold a total now reaches."""

import uuid
from collections.abc import Sequence

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.kit.db import utcnow
from backend.relay.models import Operation
from backend.runtime import current
from backend.settings import Settings
from backend.tiers import grants
from backend.tiers.models import LifetimeEarning, StatusGrant, StatusTier
from backend.users.models import User

Key = tuple[uuid.UUID, uuid.UUID]  # (credit token, user)


def confirmed(session: Session, ops: Sequence[Operation]) -> None:
    mints = [op for op in ops if op.type == "mint" and op.chain_token_id == 0]  # 0: a credit (ERC-20)
    earned = _by_recipient(session, mints)
    if earned:
        evaluate(session, current().settings, _add(session, earned))


def _by_recipient(session: Session, mints: Sequence[Operation]) -> dict[Key, tuple[uuid.UUID, int]]:
    """What each (credit, user) earned in `mints`, with the tenant; a mint to an address finds its
    user by wallet (one query for the batch)."""
    unknown = {(op.tenant_id, op.environment, op.to_address) for op in mints if op.recipient_user_id is None}
    wallets: dict[tuple[uuid.UUID, str, str], uuid.UUID] = {}
    if unknown:
        query = select(User.id, User.tenant_id, User.environment, User.wallet_address).where(
            User.wallet_address.in_({address for _, _, address in unknown})
        )
        wallets = {(r.tenant_id, r.environment, r.wallet_address): r.id for r in session.execute(query)}
    earned: dict[Key, tuple[uuid.UUID, int]] = {}
    for op in mints:
        user_id = op.recipient_user_id or wallets.get((op.tenant_id, op.environment, op.to_address))
        if user_id is not None:
            _, before = earned.get((op.token_type_id, user_id), (op.tenant_id, 0))
            earned[(op.token_type_id, user_id)] = (op.tenant_id, before + op.amount)
    return earned


def _add(session: Session, earned: dict[Key, tuple[uuid.UUID, int]]) -> dict[Key, int]:
    """Adds to the running totals, their rows created and locked in key order (so two batches cannot
    deadlock); answers the new totals."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    rows = [
        {"token_type_id": t, "user_id": u, "tenant_id": earned[(t, u)][0], "amount": 0}
        for t, u in sorted(earned)
    ]
    session.execute(dialect.insert(LifetimeEarning).on_conflict_do_nothing(), rows)
    query = (
        select(LifetimeEarning)
        .where(tuple_(LifetimeEarning.token_type_id, LifetimeEarning.user_id).in_(list(earned)))
        .order_by(LifetimeEarning.token_type_id, LifetimeEarning.user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    totals = {}
    for row in session.scalars(query):
        row.amount += earned[(row.token_type_id, row.user_id)][1]
        totals[(row.token_type_id, row.user_id)] = row.amount
    session.flush()
    return totals


def evaluate(session: Session, settings: Settings, totals: dict[Key, int]) -> None:
    """Grants every active tier of these credits to the users whose total reaches its threshold and
    who do not hold it; the membership's row is locked first, so a second evaluation waits and then
    finds it held."""
    tiers = session.scalars(
        select(StatusTier).where(
            StatusTier.credit_token_id.in_({t for t, _ in totals}), StatusTier.active.is_(True)
        )
    ).all()
    for tier in tiers:
        for (token_id, user_id), total in totals.items():
            if token_id != tier.credit_token_id or total < tier.threshold:
                continue
            membership = locked_membership(session, tier, user_id)
            if grants.due(tier, membership, total):
                grants.grant(session, settings, tier, membership)
    session.flush()


def locked_membership(session: Session, tier: StatusTier, user_id: uuid.UUID) -> StatusGrant:
    """The user's membership of the tier, created (as `revoked`, never granted) if new, locked."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    new = {
        "id": uuid.uuid4(),
        "created_at": utcnow(),
        "changed_at": utcnow(),
        "tenant_id": tier.tenant_id,
        "environment": tier.environment,
        "tier_id": tier.id,
        "user_id": user_id,
        "state": "revoked",
        "sequence": 0,
        "earned_base": 0,
    }
    session.execute(dialect.insert(StatusGrant).values(new).on_conflict_do_nothing())
    query = select(StatusGrant).where(StatusGrant.tier_id == tier.id, StatusGrant.user_id == user_id)
    found = session.scalar(query.with_for_update().execution_options(populate_existing=True))
    assert found is not None
    return found
