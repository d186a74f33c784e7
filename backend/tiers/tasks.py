"""The periodic pass of every worker (and of `pers up`): burns the statuses whose grant expired, tries
failed grants again while the user still qualifies, and grants the users who had earned enough before
their tier existed (or was activated). Rows are taken with SKIP LOCKED, so the passes of several
workers share the work."""

import threading

import structlog
from sqlalchemy import Numeric, cast, literal, select
from sqlalchemy.orm import Session

from backend.kit import jobs
from backend.kit.db import utcnow
from backend.runtime import Runtime
from backend.settings import Settings
from backend.tiers import grants
from backend.tiers.earnings import locked_membership
from backend.tiers.models import LifetimeEarning, StatusGrant, StatusTier

log = structlog.get_logger()
POLL = 30.0  # seconds between passes: expiry is counted in days
BATCH = 200


def pass_once(session: Session, settings: Settings) -> int:
    """Answers how many memberships it moved on."""
    now = utcnow()
    expired = select(StatusGrant).where(StatusGrant.state == "granted", StatusGrant.expires_at <= now)
    failed = select(StatusGrant).where(
        StatusGrant.state == "failed", StatusGrant.changed_at <= now - grants.RETRY_AFTER
    )
    moved = 0
    for query in (expired, failed):
        rows = session.scalars(
            query.order_by(StatusGrant.changed_at).limit(BATCH).with_for_update(skip_locked=True)
        )
        for membership in rows.all():
            tier = session.get(StatusTier, membership.tier_id)
            assert tier is not None
            before = membership.state
            if membership.state == "granted":
                grants.revoke(session, settings, tier, membership)
            elif grants.due(tier, membership, grants.lifetime(session, tier, membership.user_id)):
                grants.grant(session, settings, tier, membership)
            else:
                membership.changed_at = now  # no longer due (a raised threshold): to the back of the line
            moved += membership.state != before
    return moved + _newcomers(session, settings)


def _newcomers(session: Session, settings: Settings) -> int:
    """Users whose lifetime earnings reach an active tier they never joined, for the tiers not caught up
    (new, re-activated, or with a new threshold): their earners are scanned once, a batch per pass. The
    SQL comparison narrows (NUMERIC on Postgres; SQLite's is approximate beyond 2^63), `due` decides."""
    tiers = session.scalars(
        select(StatusTier)
        .where(StatusTier.active.is_(True), StatusTier.caught_up.is_(False))
        .with_for_update(skip_locked=True)
    ).all()
    granted = 0
    for tier in tiers:
        member = select(StatusGrant.id).where(
            StatusGrant.tier_id == tier.id, StatusGrant.user_id == LifetimeEarning.user_id
        )
        threshold = cast(literal(str(tier.threshold)), Numeric(78, 0))
        query = select(LifetimeEarning.user_id, LifetimeEarning.amount).where(
            LifetimeEarning.token_type_id == tier.credit_token_id,
            ~member.exists(),
            cast(LifetimeEarning.amount, Numeric(78, 0)) >= threshold,
        )
        found = session.execute(query.limit(BATCH)).all()
        for user_id, earned in found:
            membership = locked_membership(session, tier, user_id)
            if grants.due(tier, membership, earned):
                grants.grant(session, settings, tier, membership)
                granted += 1
        tier.caught_up = len(found) < BATCH
    session.flush()
    return granted


def run(runtime: Runtime, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with jobs.committed(runtime.sessions) as session:
                pass_once(session, runtime.settings)
        except Exception:  # outlives a database hiccup; the rows keep the state
            log.exception("tiers.pass_failed")
        stop.wait(POLL)


def start(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run, args=(runtime, stop), name="status-tiers", daemon=True)
    thread.start()
    return thread
