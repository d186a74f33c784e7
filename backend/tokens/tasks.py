"""Jobs: putting a token type on chain."""

import uuid

from web3 import Web3

from backend.chain.deploy import FACTORY, TokenKind
from backend.kit.db import unit_of_work
from backend.kit.errors import ChainError
from backend.kit.jobs import RetryLater, job
from backend.runtime import Runtime
from backend.tenants.models import TenantEnvironment
from backend.tenants.onchain import active_signers, adopt, chain_step, enqueue_sync, funded_admin
from backend.tenants.service import environment
from backend.tokens.models import TokenType
from backend.tokens.service import ACTIVATE_JOB

KINDS = {"reward": TokenKind.REWARD, "status": TokenKind.STATUS}


@job(ACTIVATE_JOB)
def activate(runtime: Runtime, token_id: str) -> None:
    with unit_of_work(runtime.sessions) as session:
        token = session.get(TokenType, uuid.UUID(token_id))
        if token is None or token.status != "pending":
            return
        env = environment(session, token.tenant_id, token.environment)
        if env.status == "failed":
            token.status, token.failure_reason = (
                "failed",
                f"the environment's deployment failed: {env.failure_reason}",
            )
            return
        if env.status != "active":
            raise RetryLater("the environment's contracts are not deployed yet", countdown=3)
        session.expunge_all()
    try:
        with chain_step("activating a token"):
            address, tx_hash = (
                _deploy_credit(runtime, env, token)
                if token.kind == "credit"
                else _register(runtime, env, token)
            )
    except ChainError as exc:
        _finish(runtime, token.id, failure=exc.message)
        return
    _finish(runtime, token.id, address=address, tx_hash=tx_hash)


def _deploy_credit(runtime: Runtime, env: TenantEnvironment, token: TokenType) -> tuple[str, str | None]:
    assert env.network is not None and env.factory_address is not None
    chain = runtime.chain(env.network)
    factory = chain.contract(FACTORY, env.factory_address)
    key, salt = bytes.fromhex(env.tenant_key[2:]), token.id.bytes.rjust(32, b"\0")
    address = factory.functions.creditAddress(chain.relayer.address, key, salt).call()
    if chain.has_code(address):
        adopt(chain, "CreditToken", address, env.admin_address)
        return Web3.to_checksum_address(address), None
    with unit_of_work(runtime.sessions) as session:
        minters = sorted(active_signers(session, env.tenant_id))
    args = (
        key,
        salt,
        token.name,
        token.symbol,
        token.decimals,
        token.max_supply or 0,
        env.admin_address,
        minters,
    )
    receipt = chain.call(factory, "createCredit", *args)
    return Web3.to_checksum_address(address), receipt["transactionHash"].to_0x_hex()


def _register(runtime: Runtime, env: TenantEnvironment, token: TokenType) -> tuple[str, str | None]:
    assert env.network is not None and env.rewards_address is not None and token.chain_token_id is not None
    chain = runtime.chain(env.network)
    rewards = chain.contract("RewardsToken", env.rewards_address)
    registered = rewards.functions.kindOf(token.chain_token_id).call()
    wanted = KINDS[token.kind]
    if registered == wanted:
        return env.rewards_address, None
    if registered != 0:
        raise ChainError(f"id {token.chain_token_id} is already registered with kind {registered}")
    admin = funded_admin(runtime, chain, env)
    receipt = chain.call(rewards, "registerId", token.chain_token_id, int(wanted), sender=admin)
    return env.rewards_address, receipt["transactionHash"].to_0x_hex()


def _finish(
    runtime: Runtime,
    token_id: uuid.UUID,
    *,
    failure: str | None = None,
    address: str | None = None,
    tx_hash: str | None = None,
) -> None:
    with unit_of_work(runtime.sessions) as session:
        token = session.get(TokenType, token_id)
        if token is None or token.status == "active":  # a concurrent run got there first
            return
        if failure is not None:
            token.status, token.failure_reason = "failed", failure
            return
        token.status, token.contract_address, token.tx_hash = "active", address, tx_hash
        if token.kind == "credit":  # signers added while it deployed get their role through this job
            enqueue_sync(session, token.tenant_id, token.environment)
