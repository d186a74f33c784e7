"""The delivery job: one attempt per run, then the next one held back with exponential backoff and
jitter until `PERS_WEBHOOK_RETRY_WINDOW` after the event, when the delivery ends `failed`.

At least once: the attempt is made outside any transaction and recorded after; a crash between the
two sends it again, with the same event id, which receivers dedupe by. While a delivery waits, its
outbox job is marked dispatched until the wake-up time, so the sweeper does not resend it early
(and resends it if the held message is lost)."""

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from backend.kit.db import unit_of_work, utcnow
from backend.kit.jobs import RetryLater, job
from backend.kit.outbox import OutboxMessage
from backend.runtime import Runtime
from backend.webhooks import sender
from backend.webhooks.models import Webhook, WebhookDelivery, WebhookEvent
from backend.webhooks.service import DELIVER_JOB, secret_context

MAX_DELAY = timedelta(hours=1)  # between two attempts, however many failed
MAX_HOLD = 300.0  # seconds a held job message waits before it looks again (brokers redeliver long ETAs)
LEASE = timedelta(seconds=60)  # an attempt in flight: a concurrent run of the same job waits


@dataclass(frozen=True)
class Attempt:
    url: str
    environment: str
    secret: str
    payload: bytes


def backoff(attempts: int, base: timedelta, rng: random.Random | None = None) -> timedelta:
    """After the n-th failed attempt: base·2^(n-1), at most MAX_DELAY, jittered down by up to half so
    receivers that failed together are not all retried at the same instant."""
    full = min(base * (1 << min(attempts - 1, 32)), MAX_DELAY)
    jitter = rng.random() if rng is not None else random.random()
    return full * (0.5 + 0.5 * jitter)


def next_attempt(
    attempts: int, first: datetime, now: datetime, base: timedelta, window: timedelta
) -> datetime | None:
    """When to try again, or None: the next attempt would fall beyond the retry window."""
    at = now + backoff(attempts, base)
    return at if at <= first + window else None


@job(DELIVER_JOB)
def deliver(runtime: Runtime, delivery_id: str) -> None:
    key = uuid.UUID(delivery_id)
    attempt = _claim(runtime, key)
    if attempt is None:
        return
    outcome = sender.post(attempt.url, attempt.environment, attempt.secret, attempt.payload)
    _record(runtime, key, outcome)


def _claim(runtime: Runtime, key: uuid.UUID) -> Attempt | None:
    """The attempt to make now; None when the delivery is over; RetryLater while it is not due."""
    with unit_of_work(runtime.sessions) as session:
        delivery = session.get(WebhookDelivery, key, with_for_update=True)
        if delivery is None or delivery.status != "pending":
            return None
        now = utcnow()
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            countdown = _hold(session, delivery)
        else:
            delivery.next_attempt_at = now + LEASE
            webhook = session.get(Webhook, delivery.webhook_id)
            event = session.get(WebhookEvent, delivery.event_id)
            assert webhook is not None and event is not None  # both cascade to the delivery
            secret = runtime.keystore.open(webhook.secret_sealed, secret_context(webhook.id)).decode()
            payload = sender.body(str(event.id), event.type, event.created_at, event.data)
            return Attempt(webhook.url, webhook.environment, secret, payload)
    raise RetryLater("webhook delivery not due yet", countdown=countdown)  # once the hold is committed


def _record(runtime: Runtime, key: uuid.UUID, outcome: sender.Outcome) -> None:
    settings = runtime.settings
    with unit_of_work(runtime.sessions) as session:
        delivery = session.get(WebhookDelivery, key, with_for_update=True)
        if delivery is None or delivery.status != "pending":
            return  # deleted with its subscription meanwhile
        now = utcnow()
        entry: dict[str, Any] = {
            "at": now.isoformat(),
            "statusCode": outcome.status_code,
            "error": outcome.error,
        }
        delivery.history = [*delivery.history, entry]
        delivery.attempts += 1
        delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
        if outcome.ok:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
            return
        base = timedelta(milliseconds=settings.webhook_retry_base_ms)
        window = timedelta(seconds=settings.webhook_retry_window)
        delivery.next_attempt_at = next_attempt(delivery.attempts, delivery.created_at, now, base, window)
        if delivery.next_attempt_at is None:
            delivery.status = "failed"
            return
        countdown = _hold(session, delivery)
    raise RetryLater("webhook delivery failed; retried with backoff", countdown=countdown)


def _hold(session: Session, delivery: WebhookDelivery) -> float:
    """Seconds until the job should look again; the sweeper is kept off it until then (and a little
    after, STALE_AFTER), so it resends the job only if the held message is lost."""
    assert delivery.next_attempt_at is not None
    countdown = min(max((delivery.next_attempt_at - utcnow()).total_seconds(), 0.0), MAX_HOLD)
    message = session.get(OutboxMessage, delivery.job_id)
    if message is not None:
        message.dispatched_at = utcnow() + timedelta(seconds=countdown)
    return countdown
