"""Jobs: deploying a tenant environment's contracts through the factory."""

import uuid

from web3 import Web3

from backend.chain.deploy import FACTORY
from backend.kit.db import unit_of_work
from backend.kit.errors import ChainError
from backend.kit.jobs import job
from backend.runtime import Runtime
from backend.tenants.models import TenantEnvironment
from backend.tenants.onchain import active_signers, adopt, chain_step, enqueue_sync
from backend.tenants.service import DEPLOY_JOB


@job(DEPLOY_JOB)
def deploy_environment(runtime: Runtime, environment_id: str) -> None:
    """Creates the environment's ERC-1155 clone at its CREATE2 address unless it is already there."""
    with unit_of_work(runtime.sessions) as session:
        env = session.get(TenantEnvironment, uuid.UUID(environment_id))
        if env is None or env.status == "active" or env.network is None:
            return
        minters = sorted(active_signers(session, env.tenant_id))
        session.expunge(env)
    network = env.network
    try:
        with chain_step("deploying tenant contracts"):
            chain = runtime.chain(network)
            factory_address = runtime.platform(network).contracts[FACTORY]
            factory = chain.contract(FACTORY, factory_address)
            key = bytes.fromhex(env.tenant_key[2:])
            rewards = factory.functions.rewardsAddress(chain.relayer.address, key).call()
            tx_hash = None
            if not chain.has_code(rewards):
                receipt = chain.call(factory, "createRewards", key, "", env.admin_address, minters)
                tx_hash = receipt["transactionHash"].to_0x_hex()
            adopt(chain, "RewardsToken", rewards, env.admin_address)
    except ChainError as exc:
        _finish(runtime, env.id, failure=exc.message)
        return
    _finish(
        runtime, env.id, factory=factory_address, rewards=Web3.to_checksum_address(rewards), tx_hash=tx_hash
    )


def _finish(
    runtime: Runtime,
    env_id: uuid.UUID,
    *,
    failure: str | None = None,
    factory: str | None = None,
    rewards: str | None = None,
    tx_hash: str | None = None,
) -> None:
    with unit_of_work(runtime.sessions) as session:
        env = session.get(TenantEnvironment, env_id)
        if env is None or env.status == "active":  # a concurrent run got there first: keep its record
            return
        if failure is not None:
            env.status, env.failure_reason = "failed", failure
            return
        env.status, env.failure_reason = "active", None
        env.factory_address, env.rewards_address = factory, rewards
        env.deploy_tx_hash = tx_hash or env.deploy_tx_hash
        # Businesses created while the deployment ran get their role through this job.
        enqueue_sync(session, env.tenant_id, env.environment)
