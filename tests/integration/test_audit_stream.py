"""The audit export streams any number of events in chain order, chunk after chunk, on Postgres (a
server-side cursor) and on SQLite, with the other tenants' contracts left out."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from backend.audit import service
from backend.auth.principal import TenantScope
from backend.kit import migrate
from backend.kit.db import make_engine, utcnow
from backend.tenants.models import Tenant, TenantEnvironment
from indexer.models import Cursor, Event
from tests.conftest import throwaway_postgres

EVENTS = 2 * service.STREAM_CHUNK + 7  # more than two chunks
OURS, THEIRS = "0x" + "ab" * 20, "0x" + "cd" * 20


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
        migrate.upgrade(url)
        yield url
        return
    with throwaway_postgres(migrated=True) as url:
        yield url


def test_the_export_streams_every_event_of_the_tenant_in_chain_order(database: str) -> None:
    engine = make_engine(database)
    tenant_id = uuid.uuid4()
    tenant = Tenant(id=tenant_id, name="Stream", slug=f"stream-{uuid.uuid4().hex[:8]}")
    env = TenantEnvironment(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        environment="test",
        project_key=f"pk_test_{uuid.uuid4().hex}",
        network="local",
        status="active",
        tenant_key="0x" + "11" * 32,
        admin_address="0x" + "22" * 20,
        admin_key_sealed="sealed",
        rewards_address=OURS,
    )
    cursor = Cursor(
        network="local",
        chain_id=31337,
        block_number=EVENTS,
        block_hash=None,
        head_number=EVENTS,
        updated_at=utcnow(),
    )
    rows = [
        Event(
            chain_id=31337,
            block_hash=f"0x{block:064x}",
            log_index=index,
            block_number=block,
            tx_hash=f"0x{block + 1:064x}",
            contract=OURS if index == 0 else THEIRS,
            name="TransferSingle",
            from_address="0x" + "33" * 20,
            to_address="0x" + "44" * 20,
            token_id=1,
            amount=2**200 + block,
        )
        for block in reversed(range(EVENTS))  # written out of order: the export orders them
        for index in (0, 1)
    ]
    with Session(engine) as session, session.begin():
        session.add_all([tenant, env, cursor])
        session.flush()
        session.add_all(rows)
    with Session(engine) as session:
        scope = TenantScope(tenant_id, "test")
        lines = "".join(service.as_jsonl(service.stream(session, scope, service.EventFilters()))).splitlines()
        csv_lines = "".join(
            service.as_csv(service.stream(session, scope, service.EventFilters(from_block=10)))
        )
    exported = [json.loads(line) for line in lines]
    assert [e["blockNumber"] for e in exported] == list(range(EVENTS))
    assert {e["contract"] for e in exported} == {OURS}
    assert exported[-1]["amount"] == str(2**200 + EVENTS - 1) and exported[0]["external"] is True
    assert len(csv_lines.splitlines()) == 1 + EVENTS - 10
    engine.dispose()
