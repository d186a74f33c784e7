"""The transactional outbox: a job row is written in the same transaction as the domain change it
follows from, and its Celery message is sent only after commit. A sweeper re-sends rows still
pending after a while, so a lost message delays a job but never loses it; tasks are idempotent."""

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, Select, String, Text, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.kit.db import Base, Timestamped, UtcDateTime, utcnow

_PENDING = "pers_outbox_pending"
MAX_ATTEMPTS = 20  # failures after which a job is left for an operator (its last error is kept)


class OutboxMessage(Timestamped, Base):
    __tablename__ = "outbox"

    task: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


def enqueue(session: Session, task: str, **payload: Any) -> OutboxMessage:
    """Adds a job to the caller's transaction; it is dispatched once that transaction commits."""
    message = OutboxMessage(id=uuid.uuid4(), task=task, payload=payload)
    session.add(message)
    session.info.setdefault(_PENDING, []).append(message.id)
    return message


def on_commit(session: Session) -> list[uuid.UUID]:
    """Ids enqueued in the transaction that just committed (and forgets them)."""
    ids: list[uuid.UUID] = session.info.pop(_PENDING, [])
    return ids


def stale(session: Session, older_than: timedelta) -> list[uuid.UUID]:
    """Jobs not completed and not (re)dispatched for `older_than`: the sweeper sends them again."""
    cutoff = utcnow() - older_than
    query = (
        select(OutboxMessage.id)
        .where(OutboxMessage.completed_at.is_(None), OutboxMessage.created_at < cutoff)
        .where(OutboxMessage.attempts < MAX_ATTEMPTS)
        .where((OutboxMessage.dispatched_at.is_(None)) | (OutboxMessage.dispatched_at < cutoff))
    )
    return list(session.scalars(query.limit(500)))


# URLs (an RPC URL may carry an API key), 32-byte hex values (keys) and our own secret prefixes.
_SECRET = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+|\b(?:0x)?[0-9a-fA-F]{64}\b|\b(?:sk|op|rt)_[A-Za-z0-9_-]+")


def public_error(last_error: str, limit: int = 300) -> str:
    """A job's last error as a caller may read it: secrets and URLs redacted, and short."""
    text = _SECRET.sub("[redacted]", " ".join(last_error.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def select_by_ids(ids: list[uuid.UUID]) -> Select[OutboxMessage]:
    return select(OutboxMessage).where(OutboxMessage.id.in_(ids))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
