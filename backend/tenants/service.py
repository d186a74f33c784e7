"""Creating tenants (with their first admin and both environments) and reading their state."""

import uuid
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from web3 import Web3

from backend.auth.credentials import generate_password, hash_password, new_secret
from backend.auth.models import Admin
from backend.kit import outbox
from backend.kit.db import unit_of_work
from backend.kit.errors import Conflict
from backend.kit.keystore import Keystore
from backend.settings import Settings
from backend.tenants.models import Tenant, TenantEnvironment
from backend.tenants.schemas import TenantCreate

if TYPE_CHECKING:
    from backend.runtime import Runtime

ENVIRONMENTS = ("test", "live")
DEPLOY_JOB = "tenants.deploy_environment"


def admin_key_context(env: TenantEnvironment) -> str:
    return f"tenant:{env.tenant_id}:{env.environment}:admin"


def admin_account(keystore: Keystore, env: TenantEnvironment) -> LocalAccount:
    """The tenant's on-chain admin for this environment (custodial; registers ids, grants roles)."""
    account: LocalAccount = Account.from_key(keystore.open(env.admin_key_sealed, admin_key_context(env)))
    return account


def create_tenant(
    session: Session, settings: Settings, keystore: Keystore, data: TenantCreate
) -> tuple[Tenant, Admin, str | None]:
    if session.scalar(select(Tenant.id).where(Tenant.slug == data.slug)) is not None:
        raise Conflict(f"the slug {data.slug!r} is taken", code="slug_taken")
    tenant = Tenant(id=uuid.uuid4(), name=data.name, slug=data.slug)
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took the slug
        raise Conflict(f"the slug {data.slug!r} is taken", code="slug_taken") from exc
    generated = None if data.admin_password else generate_password()
    admin = Admin(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        email=data.admin_email.lower(),
        role="TENANT_ADMIN",
        password_hash=hash_password(data.admin_password or generated or ""),
    )
    session.add(admin)
    for environment in ENVIRONMENTS:
        network = settings.network_for(environment)
        env = TenantEnvironment(
            id=uuid.uuid4(),
            tenant_id=tenant.id,
            environment=environment,
            project_key=new_secret(f"pk_{environment}"),
            network=network,
            status="pending" if network else "unconfigured",
            tenant_key=Web3.keccak(text=f"{tenant.id}:{environment}").to_0x_hex(),
            admin_address="",
            admin_key_sealed="",
        )
        env.admin_address, env.admin_key_sealed = keystore.new_account(admin_key_context(env))
        session.add(env)
        if network:
            outbox.enqueue(session, DEPLOY_JOB, environment_id=str(env.id))
    session.flush()
    return tenant, admin, generated


def environments_query(tenant_id: uuid.UUID) -> Select[TenantEnvironment]:
    query = select(TenantEnvironment).where(TenantEnvironment.tenant_id == tenant_id)
    return query.order_by(TenantEnvironment.environment.desc())  # test, then live


def environments(session: Session, tenant_id: uuid.UUID) -> list[TenantEnvironment]:
    return list(session.scalars(environments_query(tenant_id)))


def environments_of(
    session: Session, tenant_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[TenantEnvironment]]:
    """The environments of several tenants in one query, by tenant."""
    query = select(TenantEnvironment).where(TenantEnvironment.tenant_id.in_(tenant_ids))
    found: dict[uuid.UUID, list[TenantEnvironment]] = {}
    for env in session.scalars(query.order_by(TenantEnvironment.environment.desc())):
        found.setdefault(env.tenant_id, []).append(env)
    return found


def environment(session: Session, tenant_id: uuid.UUID, name: str) -> TenantEnvironment:
    env = session.scalar(
        select(TenantEnvironment).where(
            TenantEnvironment.tenant_id == tenant_id, TenantEnvironment.environment == name
        )
    )
    if env is None:
        raise LookupError(f"tenant {tenant_id} has no {name} environment")
    return env


def redeploy_ephemeral(runtime: "Runtime", network: str) -> None:
    """The embedded EVM starts empty each run. Its clones have CREATE2 addresses, so replaying the
    deployments of every environment and token on it restores the same contracts at the same
    addresses (balances do not survive a restart: see docs/adr/0003-platform-core.md)."""
    if not runtime.settings.chain_config().network(network).embedded:
        return
    from backend.tokens.models import TokenType
    from backend.tokens.service import ACTIVATE_JOB

    with unit_of_work(runtime.sessions) as session:
        envs = list(session.scalars(select(TenantEnvironment).where(TenantEnvironment.network == network)))
        for env in envs:
            env.status = "pending"
            outbox.enqueue(session, DEPLOY_JOB, environment_id=str(env.id))
            tokens = session.scalars(
                select(TokenType).where(
                    TokenType.tenant_id == env.tenant_id,
                    TokenType.environment == env.environment,
                    TokenType.status != "failed",
                )
            )
            for token in tokens:
                token.status = "pending"
                outbox.enqueue(session, ACTIVATE_JOB, token_id=str(token.id))
        ids = outbox.on_commit(session)
    for job_id in ids:
        runtime.dispatch(job_id)
