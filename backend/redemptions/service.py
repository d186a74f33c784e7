"""Redemption offers and redeems. A redeem is checked and written in the caller's transaction with its
operations (an exchange's two legs, or a catalog burn): the offer active and in its window, the required
status held, the per-user limit (the user's row locked, so a user's redeems are counted one at a time),
the balance, then the stock taken by one conditional UPDATE (exactly once, whatever the concurrency).
`follow` moves redeems along their operations and gives the stock back when one fails."""

import uuid
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from backend.analytics import rollups
from backend.auth.principal import USER, TenantScope
from backend.businesses.models import Business
from backend.kit.db import utcnow
from backend.kit.errors import Conflict, NotFound, PersError
from backend.kit.scope import get_scoped, scoped
from backend.redemptions.models import Redeem, Redemption
from backend.redemptions.schemas import (
    PreparedRedeem,
    RedeemCreate,
    RedeemOut,
    RedeemPrepare,
    RedemptionCreate,
    RedemptionUpdate,
)
from backend.relay import service as relay
from backend.relay.models import Operation
from backend.relay.schemas import Movement, TransactionCreate
from backend.settings import Settings
from backend.tokens.models import TokenType
from backend.users.models import User
from backend.webhooks import service as webhooks
from indexer import reads

SETTLED = ("mined", "confirmed")
OPEN = ("PENDING", "PROCESSING")


class Refused(PersError):
    status = 422


def _token(session: Session, scope: TenantScope, token_id: uuid.UUID, role: str) -> TokenType:
    token = session.get(TokenType, token_id)
    if token is None or (token.tenant_id, token.environment) != (scope.tenant_id, scope.environment):
        raise NotFound(f"the {role} token was not found", code="token_not_found")
    return token


def create_redemption(session: Session, scope: TenantScope, body: RedemptionCreate) -> Redemption:
    business = session.get(Business, body.business_id)
    if business is None or business.tenant_id != scope.tenant_id:
        raise NotFound("business not found", code="business_not_found")
    cost = _token(session, scope, body.cost_token_id, "cost")
    if cost.kind == "status":
        raise Refused("a status cannot be burnt by its holder", code="token_locked")
    if body.kind == "exchange":
        if body.reward_token_id is None or body.reward_amount is None:
            raise Refused("an exchange names `rewardTokenId` and `rewardAmount`", code="missing_field")
        _token(session, scope, body.reward_token_id, "reward")
    elif body.reward_token_id is not None or body.reward_amount is not None:
        raise Refused("a catalog offer mints nothing: no reward token", code="invalid_value")
    if body.required_status_token_id is not None:
        required = _token(session, scope, body.required_status_token_id, "required status")
        if required.kind != "status":
            raise Refused("`requiredStatusTokenId` must be a status token", code="invalid_value")
    _check_window(body.valid_from, body.valid_until)
    offer = Redemption(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        stock_remaining=body.stock,
        # amounts as ints (their dump is the JSON decimal string)
        **{**body.model_dump(), "cost_amount": body.cost_amount, "reward_amount": body.reward_amount},
    )
    session.add(offer)
    session.flush()
    return offer


def _check_window(valid_from: datetime | None, valid_until: datetime | None) -> None:
    if valid_from is not None and valid_until is not None and valid_from >= valid_until:
        raise Refused("`validFrom` must be before `validUntil`", code="invalid_window")


def listed(scope: TenantScope, active: bool | None) -> Select[Redemption]:
    query = scoped(Redemption, scope, environment=True).order_by(Redemption.created_at, Redemption.id)
    return query if active is None else query.where(Redemption.active == active)


def get_redemption(session: Session, scope: TenantScope, redemption_id: str | uuid.UUID) -> Redemption:
    return get_scoped(session, Redemption, scope, redemption_id, environment=True)


def update_redemption(
    session: Session, scope: TenantScope, redemption_id: str, body: RedemptionUpdate
) -> Redemption:
    offer = get_redemption(session, scope, redemption_id)
    session.refresh(offer, with_for_update=True)  # against redeems taking stock meanwhile
    changes = body.model_dump(exclude_unset=True)
    if any(changes.get(name, "") is None for name in ("name", "active")):
        raise Refused("`name` and `active` cannot be null", code="invalid_value")
    if "stock" in changes:
        taken = (offer.stock or 0) - (offer.stock_remaining or 0)
        new = changes.pop("stock")
        if new is not None and new < taken:
            raise Conflict(f"{taken} redeems already took stock", code="stock_below_taken")
        offer.stock, offer.stock_remaining = new, None if new is None else new - taken
    for name, value in changes.items():
        setattr(offer, name, value)
    _check_window(offer.valid_from, offer.valid_until)
    session.flush()
    return offer


def redeem(
    session: Session, settings: Settings, scope: TenantScope, user_id: uuid.UUID, body: RedeemCreate
) -> Redeem:
    """A managed-wallet user's redeem, with every check, its operations queued and the stock taken."""
    offer = get_redemption(session, scope, body.redemption_id)
    now = utcnow()
    if not offer.active:
        raise Conflict("the offer is not active", code="redemption_inactive")
    if offer.valid_from is not None and now < offer.valid_from:
        raise Conflict("the offer has not started", code="redemption_not_started")
    if offer.valid_until is not None and now >= offer.valid_until:
        raise Conflict("the offer has ended", code="redemption_ended")
    user = session.scalar(
        select(User).where(User.id == user_id, User.tenant_id == scope.tenant_id).with_for_update()
    )
    if user is None:
        raise NotFound("user not found", code="user_not_found")
    signed = _signed_leg(body, offer.kind)
    if user.wallet_key_sealed is None and signed is None:
        raise Refused("an own-wallet user's redeem carries its signature", code="signature_required")
    if offer.per_user_limit is not None:
        made = session.scalar(
            select(func.count())
            .select_from(Redeem)
            .where(Redeem.redemption_id == offer.id, Redeem.user_id == user.id, Redeem.status != "FAILED")
        )
        if (made or 0) >= offer.per_user_limit:
            raise Conflict(
                "the user has redeemed this offer as often as allowed", code="per_user_limit_reached"
            )
    cost = _token(session, scope, offer.cost_token_id, "cost")
    if offer.required_status_token_id is not None:
        status = _token(session, scope, offer.required_status_token_id, "required status")
        if available(session, settings, status, user.wallet_address) < 1:
            raise Conflict("the offer needs a status the user does not hold", code="status_required")
    if available(session, settings, cost, user.wallet_address) < offer.cost_amount:
        raise Conflict("the user's balance is below the cost", code="insufficient_balance")
    _take_stock(session, offer)
    record = Redeem(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        redemption_id=offer.id,
        user_id=user.id,
        status="PENDING",
    )
    if offer.kind == "exchange":
        assert offer.reward_token_id is not None and offer.reward_amount is not None
        legs = relay.submit_exchange(
            session,
            settings,
            scope,
            user_id=user.id,
            cost_token_id=cost.id,
            cost_amount=offer.cost_amount,
            business_id=offer.business_id,
            reward_token_id=offer.reward_token_id,
            reward_amount=offer.reward_amount,
            signed=signed,
        )
        record.burn_operation_id, record.mint_operation_id = legs.burn.id, legs.mint.id
        record.exchange_id = legs.exchange.id
    else:
        fields = {"type": "burn", "token_id": cost.id, "amount": str(offer.cost_amount)}
        if signed is not None:
            fields |= {
                "from": user.wallet_address,
                **body.model_dump(include={"ref", "deadline", "signature"}),
            }
        burn = TransactionCreate.model_validate(fields)
        record.burn_operation_id = relay.submit(session, settings, scope, relay.Actor(USER, user.id), burn).id
    session.add(record)
    session.flush()
    return record


def _signed_leg(body: RedeemCreate, kind: str) -> relay.SignedLeg | None:
    """The own wallet's signed burn, complete (`ref`, `deadline`, and an exchange's `exchangeRef`)."""
    if body.signature is None:
        if body.ref or body.deadline or body.exchange_ref:
            raise Refused(
                "`ref`, `deadline` and `exchangeRef` come with a `signature`", code="signature_required"
            )
        return None
    needed = body.ref and body.deadline and (body.exchange_ref or kind == "catalog")
    if not needed:
        raise Refused("a signed redeem carries what `prepare` answered", code="missing_field")
    assert body.ref is not None and body.deadline is not None
    return relay.SignedLeg(body.exchange_ref or "", body.ref, body.deadline, body.signature)


def prepare(
    session: Session, settings: Settings, scope: TenantScope, user_id: uuid.UUID, body: RedeemPrepare
) -> PreparedRedeem:
    """What an own wallet signs to redeem the offer: the burn as an exchange leg, or a plain burn."""
    offer = get_redemption(session, scope, body.redemption_id)
    user = session.get(User, user_id)
    assert user is not None
    if offer.kind == "exchange":
        prepared, exchange_ref = relay.prepare_exchange(
            session, settings, scope, user.id, offer.cost_token_id, offer.cost_amount
        )
        return PreparedRedeem(**prepared.model_dump(), exchange_ref=exchange_ref)
    burn = Movement.model_validate(
        {
            "type": "burn",
            "token_id": offer.cost_token_id,
            "amount": str(offer.cost_amount),
            "from": user.wallet_address,
        }
    )
    plain = relay.prepare(session, settings, scope, relay.Actor(USER, user.id), burn)
    return PreparedRedeem(**plain.model_dump(), exchange_ref=None)


def _take_stock(session: Session, offer: Redemption) -> None:
    """One unit of stock, exactly once: a conditional UPDATE that only one of concurrent redeems of
    the last unit can make."""
    if offer.stock is None:
        return
    taken = session.execute(
        update(Redemption)
        .where(Redemption.id == offer.id, Redemption.stock_remaining > 0)
        .values(stock_remaining=Redemption.stock_remaining - 1)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the offer is out of stock", code="out_of_stock")


def available(session: Session, settings: Settings, token: TokenType, address: str) -> int:
    """What `address` can spend of `token`: the mirror's balance where the indexer runs and has reached
    the address's last settled operation, else the relay's own accounting of settled operations; less
    what is on its way out. The chain stays the judge: a burn the balance cannot cover fails there, and
    the redeem with it."""
    network = settings.network_for(token.environment)
    ours = select(func.coalesce(func.sum(Operation.amount), 0)).where(Operation.token_type_id == token.id)
    settled = Operation.status.in_(SETTLED)
    leaving: tuple[str, ...] = ("queued", "submitted")
    cursor = reads.cursor(session, network) if network is not None else None
    last = session.scalar(
        select(func.max(Operation.block_number)).where(
            Operation.token_type_id == token.id,
            (Operation.from_address == address) | (Operation.to_address == address),
            settled,
        )
    )
    if network is not None and cursor is not None and cursor.block_number >= (last or 0):
        assert token.contract_address is not None
        held = reads.balances(session, network, address, [token.contract_address]).balances
        balance = sum(h.amount for h in held if h.token_id == (token.chain_token_id or 0))
    else:
        balance = int(session.scalar(ours.where(Operation.to_address == address, settled)) or 0)
        leaving += SETTLED
    out = session.scalar(ours.where(Operation.from_address == address, Operation.status.in_(leaving)))
    return balance - int(out or 0)


def redeems_of(scope: TenantScope, user_id: uuid.UUID | None = None) -> Select[Redeem]:
    """The environment's redeems, or one user's."""
    query = scoped(Redeem, scope, environment=True).order_by(Redeem.created_at, Redeem.id)
    return query if user_id is None else query.where(Redeem.user_id == user_id)


def business_redeems(scope: TenantScope, business_id: uuid.UUID) -> Select[Redeem]:
    """The redeems of the offers a business signs or fulfils."""
    offers = select(Redemption.id).where(Redemption.business_id == business_id)
    return redeems_of(scope).where(Redeem.redemption_id.in_(offers))


def fulfil(session: Session, scope: TenantScope, business_id: uuid.UUID, redeem_id: str) -> Redeem:
    """A catalog redeem's partner hands the item over (after the burn completed)."""
    record = get_scoped(session, Redeem, scope, redeem_id, environment=True)
    offer = session.get(Redemption, record.redemption_id)
    assert offer is not None
    if offer.business_id != business_id:
        raise NotFound("redeem not found")
    if offer.kind != "catalog":
        raise Conflict("only a catalog redeem is fulfilled", code="not_a_catalog_redeem")
    if record.status != "COMPLETED":
        raise Conflict("the burn has not completed", code="redeem_not_completed")
    if record.fulfilled_at is not None:
        raise Conflict("the redeem was already fulfilled", code="already_fulfilled")
    record.fulfilled_at = utcnow()
    session.flush()
    return record


def follow(session: Session, limit: int = 500) -> int:
    """Moves open redeems along their operations: PROCESSING once sent; COMPLETED when every operation
    is settled; FAILED (stock given back) when one failed; the settled ones into the analytics
    rollups. Answers how many changed."""
    redeems = list(
        session.scalars(
            select(Redeem)
            .where(Redeem.status.in_(OPEN))
            .order_by(Redeem.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not redeems:
        return 0  # the common case, every 0.2 s of every worker: nothing more to read
    ids = {r.burn_operation_id for r in redeems} | {
        r.mint_operation_id for r in redeems if r.mint_operation_id
    }
    ops = {
        row.id: row
        for row in session.execute(
            select(Operation.id, Operation.status, Operation.error_code).where(Operation.id.in_(ids))
        )
    }
    changed, settled = 0, []
    now = utcnow()
    for record in redeems:
        own = [ops[record.burn_operation_id]]
        if record.mint_operation_id is not None:
            own.append(ops[record.mint_operation_id])
        failed = next((op for op in own if op.status == "failed"), None)
        if failed is not None:
            record.status, record.error_code, record.finished_at = "FAILED", failed.error_code, now
            session.execute(
                update(Redemption)
                .where(Redemption.id == record.redemption_id, Redemption.stock_remaining.is_not(None))
                .values(stock_remaining=Redemption.stock_remaining + 1)
            )
        elif all(op.status in SETTLED for op in own):
            record.status, record.finished_at = "COMPLETED", now
        elif record.status == "PENDING" and any(op.status != "queued" for op in own):
            record.status = "PROCESSING"
            changed += 1
            continue
        else:
            continue
        changed += 1
        settled.append(record.id)
        scope = TenantScope(record.tenant_id, record.environment)
        webhooks.emit(session, scope, f"redeem.{record.status.lower()}", _event(record))
    session.flush()
    rollups.redeems_settled(session, settled)
    return changed


def _event(record: Redeem) -> dict[str, object]:
    return RedeemOut.model_validate(record).model_dump(mode="json", by_alias=True)
