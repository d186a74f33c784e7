"""The tenant side of the chain: its admin account pays for its own registry and role transactions
(topped up by the relayer), and every step first reads the chain, so a retried job repeats nothing."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.businesses.models import Business
from backend.chain.client import Chain
from backend.kit import outbox
from backend.kit.db import unit_of_work
from backend.kit.errors import ChainError, ChainUnavailable
from backend.kit.jobs import RetryLater
from backend.runtime import Runtime
from backend.tenants.models import TenantEnvironment
from backend.tenants.service import admin_account
from backend.tokens.models import TokenType


@contextmanager
def chain_step(what: str) -> Iterator[None]:
    """An unreachable node means try again later, not failure."""
    try:
        yield
    except (ChainUnavailable, OSError) as exc:
        raise RetryLater(f"{what}: {exc}") from exc


def funded_admin(runtime: Runtime, chain: Chain, env: TenantEnvironment) -> LocalAccount:
    admin = admin_account(runtime.keystore, env)
    chain.ensure_funded(admin.address, int(chain.network.admin_float_eth * 10**18))
    return admin


SYNC_JOB = "businesses.sync_minters"


def enqueue_sync(session: Session, tenant_id: uuid.UUID, environment: str) -> None:
    """Queues a minter-role reconciliation in the caller's transaction."""
    outbox.enqueue(session, SYNC_JOB, tenant_id=str(tenant_id), environment=environment)


def adopt(chain: Chain, contract_name: str, address: str, admin: str) -> None:
    """Refuses a contract at a predicted address unless the tenant's admin administers it: the address
    is bound to the platform's deployer, and this keeps it so if that ever changes."""
    token = chain.contract(contract_name, address)
    if not token.functions.hasRole(b"\0" * 32, admin).call():
        raise ChainError(f"the contract at {address} is not administered by the tenant's admin {admin}")


def active_signers(session: Session, tenant_id: uuid.UUID) -> set[str]:
    query = select(Business.signer_address).where(
        Business.tenant_id == tenant_id, Business.status == "active"
    )
    return set(session.scalars(query))


def sync_minters(runtime: Runtime, tenant_id: uuid.UUID, environment: str) -> None:
    """Makes MINTER_ROLE on every active contract of the environment match the active businesses'
    signers: grants what is missing, revokes what a suspended or re-keyed business left behind."""
    with unit_of_work(runtime.sessions) as session:
        env = session.scalar(
            select(TenantEnvironment).where(
                TenantEnvironment.tenant_id == tenant_id, TenantEnvironment.environment == environment
            )
        )
        if env is None or env.status != "active" or env.network is None:
            return
        signers = active_signers(session, tenant_id)
        retired: set[str] = set()
        for business in session.scalars(select(Business).where(Business.tenant_id == tenant_id)):
            retired.update(business.retired_signers)
            retired.add(business.signer_address)
        retired -= signers  # suspended businesses' signers, and every signer a business replaced
        credits = list(
            session.scalars(
                select(TokenType.contract_address).where(
                    TokenType.tenant_id == tenant_id,
                    TokenType.environment == environment,
                    TokenType.kind == "credit",
                    TokenType.status == "active",
                )
            )
        )
        session.expunge(env)
    chain = runtime.chain(env.network)
    contracts = [("RewardsToken", env.rewards_address)] + [("CreditToken", a) for a in credits]
    with chain_step("syncing minters"):
        admin: LocalAccount | None = None
        for name, address in contracts:
            if address is None:
                continue
            token = chain.contract(name, address)
            role = token.functions.MINTER_ROLE().call()
            for signer in sorted(signers | retired):
                holds = token.functions.hasRole(role, signer).call()
                wanted = signer in signers
                if holds != wanted:
                    admin = admin or funded_admin(runtime, chain, env)
                    chain.call(token, "grantRole" if wanted else "revokeRole", role, signer, sender=admin)
