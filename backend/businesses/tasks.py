"""Jobs: keeping MINTER_ROLE in step with the tenant's businesses."""

import uuid

from backend.kit.jobs import job
from backend.runtime import Runtime
from backend.tenants.onchain import SYNC_JOB, sync_minters


@job(SYNC_JOB)
def sync(runtime: Runtime, tenant_id: str, environment: str) -> None:
    sync_minters(runtime, uuid.UUID(tenant_id), environment)
