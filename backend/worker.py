"""The Celery application. One task, `pers.run_job`, runs an outbox job by id; the domain's job
handlers register themselves on import below. `pers worker` runs it against the real broker;
`pers up` runs it in process on Celery's in-memory transport."""

import importlib
import threading
import uuid
from datetime import timedelta

import structlog
from celery import Celery
from sqlalchemy import delete

from backend import runtime as runtime_module
from backend.auth.models import SiweNonce
from backend.kit import jobs, outbox
from backend.kit.db import unit_of_work, utcnow
from backend.kit.jobs import RetryLater

# Job handlers register themselves when their modules load.
JOB_MODULES = (
    "backend.businesses.tasks",
    "backend.tenants.tasks",
    "backend.tokens.tasks",
    "backend.webhooks.tasks",
)
for module in JOB_MODULES:
    importlib.import_module(module)

log = structlog.get_logger()
celery_app = Celery("pers")
celery_app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_enable_remote_control=False,  # no pidbox queue: workers on one host and broker never clash
)
SWEEP_EVERY = 5.0
STALE_AFTER = timedelta(seconds=30)


@celery_app.task(name="pers.run_job")
def run_job(job_id: str) -> None:
    try:
        jobs.run(runtime_module.current(), uuid.UUID(job_id))
    except RetryLater as later:
        log.info("job.retry", job_id=job_id, reason=str(later))
        # A new message rather than `Task.retry`, whose retries the in-memory transport of `pers up`
        # never delivers (the job then waited for the sweeper). This one is acked once that is sent.
        run_job.apply_async(args=[job_id], countdown=later.countdown)


def configure(broker_url: str, queue: str) -> Celery:
    celery_app.conf.broker_url = broker_url
    celery_app.conf.task_default_queue = queue
    return celery_app


def dispatch(job_id: uuid.UUID) -> None:
    """Sends a job's message. A broker that is down delays the job until the sweeper resends it."""
    try:
        run_job.apply_async(args=[str(job_id)], retry=False)
    except Exception as exc:  # kombu raises transport-specific errors
        log.warning("job.dispatch_failed", job_id=str(job_id), error=type(exc).__name__)


jobs.use_dispatcher(dispatch)


def sweep_once() -> int:
    """Resends stale jobs (returns how many) and drops sign-in nonces that expired a day ago."""
    runtime = runtime_module.current()
    with unit_of_work(runtime.sessions) as session:
        session.execute(delete(SiweNonce).where(SiweNonce.expires_at < utcnow() - timedelta(days=1)))
        ids = outbox.stale(session, STALE_AFTER)
        for message in session.scalars(outbox.select_by_ids(ids)):
            message.dispatched_at = utcnow()
    for job_id in ids:
        dispatch(job_id)
    return len(ids)


def start_sweeper(stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(SWEEP_EVERY):
            try:
                sweep_once()
            except Exception as exc:  # the sweeper must outlive a database hiccup
                log.warning("sweeper.failed", error=str(exc))

    thread = threading.Thread(target=loop, name="outbox-sweeper", daemon=True)
    thread.start()
    return thread


def start_in_process(stop: threading.Event) -> list[threading.Thread]:
    """A worker thread consuming the in-memory broker, the sweeper and the relay's pump (the `pers up`
    mode)."""
    from backend.redemptions import tasks as redemptions
    from backend.relay import exchanges, pump
    from backend.tiers import tasks as tiers

    worker = celery_app.WorkController(
        pool_cls="solo",
        concurrency=1,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
    )
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()

    def stopper() -> None:
        stop.wait()
        worker.stop()

    waiter = threading.Thread(target=stopper, daemon=True)
    waiter.start()
    runtime = runtime_module.current()
    return [
        thread,
        waiter,
        start_sweeper(stop),
        pump.start(runtime, stop),
        exchanges.start(runtime, stop),
        redemptions.start(runtime, stop),
        tiers.start(runtime, stop),
    ]
