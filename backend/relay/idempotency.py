"""`Idempotency-Key` on token-moving POSTs: the same key and body answer what the first request
answered, with the same ids; the same key with another body is a conflict."""

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth.principal import Principal
from backend.kit.errors import Conflict, PersError
from backend.relay.models import RelayRequest

MAX_KEY = 255


def request_hash(path: str, body: Any) -> str:
    text = json.dumps([path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Claim:
    """The key's record: `answer` is the first answer (its JSON text) when this is a repeat, else None
    (then the caller does the work and `keep`s its answer in the same transaction)."""

    def __init__(self, session: Session, principal: Principal, key: str, digest: str) -> None:
        if not key or len(key) > MAX_KEY or not key.isascii() or not key.isprintable():
            raise PersError(
                f"Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters",
                code="invalid_idempotency_key",
                status=422,
            )
        scope = principal.tenant
        self.session, self.answer = session, None
        where = select(RelayRequest).where(
            RelayRequest.tenant_id == scope.tenant_id,
            RelayRequest.environment == scope.environment,
            RelayRequest.caller == f"{principal.kind}:{principal.subject_id}",
            RelayRequest.idempotency_key == key,
        )
        self.row: RelayRequest | None = session.scalar(where)
        if self.row is None:
            row = RelayRequest(
                id=uuid.uuid4(),
                tenant_id=scope.tenant_id,
                environment=scope.environment,
                caller=f"{principal.kind}:{principal.subject_id}",
                idempotency_key=key,
                request_hash=digest,
                answer="",
            )
            try:
                with session.begin_nested():  # a concurrent first use waits here until it commits
                    session.add(row)
                    session.flush()
                self.row = row
                return
            except IntegrityError:
                self.row = session.scalar(where.execution_options(populate_existing=True))
        if self.row is None or self.row.request_hash != digest:
            raise Conflict("this Idempotency-Key was used with another request", code="idempotency_conflict")
        # Unanswered: the first request was refused, yet its claim was kept (on SQLite, pysqlite commits
        # a savepoint opened before any other write): this request does the work again.
        self.answer = self.row.answer or None

    def keep(self, answer: str) -> None:
        assert self.row is not None
        self.row.answer = answer
