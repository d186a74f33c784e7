"""Layering: the job kit sits below the runtime and the worker (importing it loads neither); the indexer
sits on the kit and chain layers, never on domain modules."""

import subprocess
import sys

from backend.settings import PROJECT_ROOT


def test_the_kit_imports_nothing_above_it() -> None:
    probe = (
        "import sys, backend.kit.jobs, backend.kit.session, backend.kit.outbox;"
        "print(sorted(m for m in sys.modules if m in {'backend.runtime', 'backend.worker', 'backend.app'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_jobs_are_sent_the_way_the_worker_registered() -> None:
    import uuid

    from backend.kit import jobs
    from backend.worker import dispatch

    assert jobs._dispatcher == [dispatch]
    sent: list[uuid.UUID] = []
    jobs.use_dispatcher(sent.append)
    try:
        job_id = uuid.uuid4()
        jobs.dispatch(job_id)
        assert sent == [job_id]
    finally:
        jobs.use_dispatcher(dispatch)


def test_the_indexer_depends_on_the_kit_and_chain_layers_only() -> None:
    probe = (
        "import sys, indexer.follower, indexer.reads, indexer.store, indexer.leader, indexer.process;"
        "print(sorted(m for m in sys.modules if m.startswith('backend.')"
        " and not m.startswith(('backend.kit', 'backend.chain', 'backend.settings'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
