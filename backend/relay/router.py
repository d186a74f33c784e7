"""/v1/transactions: token operations in, their records out."""

import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, USER, Auth, DeferredAuth, Pending, Principal
from backend.kit.api import Page, Paging, app_settings, error_responses
from backend.kit.errors import NotFound, PersError
from backend.kit.session import DbSession, then_commit
from backend.kit.types import Address
from backend.relay import history, service
from backend.relay.idempotency import Claim, request_hash
from backend.relay.models import Operation
from backend.relay.schemas import (
    MAX_BATCH,
    BatchCreate,
    BatchOut,
    Movement,
    OperationStatus,
    OperationType,
    Prepared,
    TransactionCreate,
    TransactionOut,
    record,
)
from backend.users.models import User

router = APIRouter(
    prefix="/v1/transactions", tags=["transactions"], responses=error_responses(400, 401, 403, 422, 429)
)
MOVERS = (ADMIN, BUSINESS, USER)
Mover = Annotated[Principal, Depends(Auth(*MOVERS, scope="transactions:write"))]
PendingMover = Annotated[Pending, Depends(DeferredAuth(*MOVERS, scope="transactions:write"))]
Reader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS, USER))]
Lister = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS))]
UserAuth = Annotated[Principal, Depends(Auth(USER))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", description="Same key and body: the same answer and ids; other body: 409"
    ),
]


def _actor(caller: Principal) -> service.Actor:
    return service.Actor(caller.kind, caller.subject_id)


async def idempotent_answer(
    request: Request,
    session: Session | None,
    caller: Principal | Pending,
    key: str | None,
    body: Callable[[], Any],
    work: Callable[[Session, Principal], Any],
) -> Response:
    """`work(session, caller)`'s answer, or the first answer to the same key and body (`body()`, read
    only under a key); the caller's check (when `Pending`), the work and the commit take one trip
    through the thread pool (`then_commit`, in the request's `session` or, if None, one of its own):
    these are the hottest routes of the API."""

    def answer(session: Session) -> Response:
        principal = caller(session) if isinstance(caller, Pending) else caller
        claim = (
            Claim(session, principal, key, request_hash(request.url.path, body()))
            if key is not None
            else None
        )
        if claim is not None and claim.answer is not None:
            return _accepted(claim.answer.encode())
        # orjson: the standard library's encoder cost a batch's answer as much as its records.
        answer = orjson.dumps(work(session, principal))
        if claim is not None:
            claim.keep(answer.decode())
        return _accepted(answer)

    return await then_commit(request, answer, session)


def _accepted(body: bytes) -> Response:
    return Response(body, status_code=202, media_type="application/json")


@router.post("/prepare", response_model=Prepared, responses=error_responses(404, 409))
def prepare(body: Movement, request: Request, session: DbSession, caller: Mover) -> Prepared:
    """The EIP-712 typed data (`eth_signTypedData_v4`) of a one-operation group for its signer: a
    holder's transfer or burn, or a mint by a business that keeps its own signer. The ref and deadline
    are fixed here; post the operation back with them and the signature."""
    return service.prepare(session, app_settings(request), caller.tenant, _actor(caller), body)


@router.post("", status_code=202, response_model=TransactionOut, responses=error_responses(404, 409))
async def create(
    body: TransactionCreate,
    request: Request,
    caller: PendingMover,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue one operation: a business's mint (its custodial signer signs), an admin's mint for a
    business, a holder's signed transfer or burn, or a managed-wallet user's (the platform signs)."""
    settings = app_settings(request)

    def work(session: Session, principal: Principal) -> dict[str, Any]:
        return record(service.submit(session, settings, principal.tenant, _actor(principal), body))

    dumped = partial(body.model_dump, mode="json", by_alias=True)
    return await idempotent_answer(request, None, caller, idempotency_key, dumped, work)


@router.post("/batch", status_code=202, response_model=BatchOut, responses=error_responses(409))
async def create_batch(
    body: BatchCreate,
    request: Request,
    caller: PendingMover,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Up to 1,000 operations, each accepted or refused on its own (`status` per item)."""
    if len(body.operations) > MAX_BATCH:
        raise PersError(f"a batch holds at most {MAX_BATCH} operations", code="batch_too_large", status=422)
    settings = app_settings(request)

    def work(session: Session, principal: Principal) -> dict[str, Any]:
        items: list[dict[str, Any] | None] = [None] * len(body.operations)
        valid: list[tuple[int, TransactionCreate]] = []
        for index, raw in enumerate(body.operations):
            try:
                valid.append((index, TransactionCreate.model_validate(raw)))
            except ValidationError as exc:
                first = exc.errors()[0]
                error = {
                    "code": _code(first),
                    "message": first["msg"],
                    "details": {"loc": list(first["loc"])},
                }
                items[index] = {"index": index, "status": 422, "transaction": None, "error": error}
        bodies = [b for _, b in valid]
        results = service.submit_many(session, settings, principal.tenant, _actor(principal), bodies)
        for (index, _), result in zip(valid, results, strict=True):
            if isinstance(result, PersError):
                error = {"code": result.code, "message": result.message, "details": result.details}
                items[index] = {"index": index, "status": result.status, "transaction": None, "error": error}
            else:
                items[index] = {"index": index, "status": 202, "transaction": record(result), "error": None}
        done = [i for i in items if i is not None]
        accepted = sum(1 for i in done if i["status"] == 202)
        return {"accepted": accepted, "refused": len(done) - accepted, "data": done}

    return await idempotent_answer(request, None, caller, idempotency_key, lambda: body.operations, work)


def _code(error: Any) -> str:
    from backend.app import validation_code

    return validation_code(error)


@router.get("/me", response_model=Page[TransactionOut])
def mine(
    session: DbSession,
    caller: UserAuth,
    paging: Annotated[Paging, Depends()],
    role: Literal["sender", "recipient"] | None = None,
) -> Page[TransactionOut]:
    """The signed-in user's operations: as sender, as recipient, or both."""
    wallet = _wallet(session, caller)
    sides = {
        "sender": Operation.from_address == wallet,
        "recipient": Operation.to_address == wallet,
    }
    condition = sides[role] if role else or_(*sides.values())
    query = _scoped(caller).where(condition)
    rows, meta = paging.apply(session, _ordered(query))
    return Page(data=[TransactionOut.model_validate(r) for r in rows], meta=meta)


@router.get("", response_model=Page[TransactionOut])
def list_transactions(
    request: Request,
    session: DbSession,
    caller: Lister,
    paging: Annotated[Paging, Depends()],
    type: OperationType | None = None,
    status: OperationStatus | None = None,
    token_id: Annotated[uuid.UUID | None, Query(alias="tokenId")] = None,
    participant_address: Annotated[Address | None, Query(alias="participantAddress")] = None,
    date_from: Annotated[datetime | None, Query(alias="dateFrom")] = None,
    date_to: Annotated[datetime | None, Query(alias="dateTo")] = None,
    external: bool | None = None,
) -> Page[TransactionOut]:
    """The environment's operations (a business's own only) and, for admins and auditors, the movements
    of its tokens made on chain by wallets (`external`), with filters. Not yet on chain first (newest
    first), then by chain position, latest first."""
    query = _visible(session, caller)
    if type is not None:
        query = query.where(Operation.type == type)
    if status is not None:
        query = query.where(Operation.status == status)
    if token_id is not None:
        query = query.where(Operation.token_type_id == token_id)
    if participant_address is not None:
        address = participant_address
        query = query.where(or_(Operation.from_address == address, Operation.to_address == address))
    if date_from is not None:
        query = query.where(Operation.created_at >= date_from)
    if date_to is not None:
        query = query.where(Operation.created_at < date_to)
    filters = history.Filters(
        type, status, token_id, participant_address, date_from is not None or date_to is not None, external
    )
    with_external = caller.kind in (ADMIN, AUDITOR)
    return history.page(
        session, app_settings(request), caller.tenant, query, filters, paging, with_external=with_external
    )


@router.get("/{transaction_id}", response_model=TransactionOut, responses=error_responses(404))
def get_transaction(transaction_id: str, session: DbSession, caller: Reader) -> TransactionOut:
    try:
        key = uuid.UUID(transaction_id)
    except ValueError:
        raise NotFound("transaction not found") from None
    op = session.scalar(_visible(session, caller).where(Operation.id == key))
    if op is None:
        raise NotFound("transaction not found")
    return TransactionOut.model_validate(op)


def _scoped(caller: Principal) -> Select[Operation]:
    scope = caller.tenant
    return select(Operation).where(
        Operation.tenant_id == scope.tenant_id, Operation.environment == scope.environment
    )


def _visible(session: DbSession, caller: Principal) -> Select[Operation]:
    """Admins and auditors see the environment's operations; a business those it submitted; a user
    those they send or receive."""
    query = _scoped(caller)
    if caller.kind == BUSINESS:
        return query.where(Operation.business_id == caller.subject_id)
    if caller.kind == USER:
        wallet = _wallet(session, caller)
        return query.where(or_(Operation.from_address == wallet, Operation.to_address == wallet))
    return query


def _wallet(session: DbSession, caller: Principal) -> str:
    user = session.get(User, caller.subject_id) if caller.subject_id else None
    if user is None:
        raise NotFound("user not found")
    return user.wallet_address


def _ordered(query: Select[Operation]) -> Select[Operation]:
    return query.order_by(Operation.created_at.desc(), Operation.id.desc())
