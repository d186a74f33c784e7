"""Processes sharing a deployments record take turns at `deploy_platform`: two workers starting on a
new network once deployed a platform each, and the tokens one factory made refused the other's
exchange router (`NotExchangeRouter`, found by the redeems' fault test)."""

import contextlib
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from backend.chain.deploy import deploy_platform
from tests.conftest import Tenant


def test_deploys_started_at_once_share_one_platform(
    anvil: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = dataclasses.replace(anvil.chain)  # the same node and nonces; its `deploy` waits below
    inside = threading.Barrier(2)
    deploy = chain.deploy

    def deploy_when_both_are_in(name: str, *args: Any) -> Any:
        """Waits (a while) for the other deployer: without turns both get here, and both deploy."""
        with contextlib.suppress(threading.BrokenBarrierError):
            inside.wait(3)
        return deploy(name, *args)

    monkeypatch.setattr(chain, "deploy", deploy_when_both_are_in)
    record = tmp_path / "deployments" / "local.json"  # a new record: nothing deployed yet for it
    with ThreadPoolExecutor(2) as pool:  # flock: each call opens the lock file, so threads take turns
        first, second = pool.map(lambda _: deploy_platform(chain, record), range(2))
    assert first.contracts == second.contracts
    assert sorted([first.deployed_now, second.deployed_now]) == [False, True]
