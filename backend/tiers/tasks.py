"""The periodic pass of every worker (and of `pers up`): burns the statuses whose grant expired and
tries failed grants again while the user still qualifies. Rows are taken with SKIP LOCKED, so the
passes of several workers share the work."""

import threading

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.kit import jobs
from backend.kit.db import utcnow
from backend.runtime import Runtime
from backend.settings import Settings
from backend.tiers import grants
from backend.tiers.models import StatusGrant, StatusTier

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
    session.flush()
    return moved


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
