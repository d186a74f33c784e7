"""Redeems follow their operations: a thread of every worker (and of `pers up`) runs `follow`."""

import threading

import structlog

from backend.kit import jobs
from backend.redemptions.service import follow
from backend.runtime import Runtime

log = structlog.get_logger()
POLL = 0.2  # seconds between passes while nothing changes


def run(runtime: Runtime, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with jobs.committed(runtime.sessions) as session:
                changed = follow(session)
        except Exception:  # outlives a database hiccup; the rows keep the state
            log.exception("redemptions.follow_failed")
            changed = 0
            stop.wait(1)
        if not changed:
            stop.wait(POLL)


def start(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run, args=(runtime, stop), name="redeem-follow", daemon=True)
    thread.start()
    return thread
