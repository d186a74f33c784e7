"""Accepting token operations: every check the API can make before the chain, then one row per
operation in the caller's transaction (the pump takes it from there). Other domains (loyalty) call
`submit_mint` / `submit` here, inside their own unit of work, rather than the HTTP routes."""

import time
import uuid
from dataclasses import dataclass, field

import psycopg
from eth_utils.address import to_checksum_address
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class

from backend.auth.principal import ADMIN, BUSINESS, USER, TenantScope
from backend.businesses.models import Business
from backend.chain.exchange import leg_digest, leg_typed_data
from backend.chain.typed_data import ZERO_ADDRESS, Domain, TokenStandard, recover, typed_data, verify
from backend.chain.typed_data import Operation as ChainOperation
from backend.kit.cache import Expiring
from backend.kit.db import utcnow
from backend.kit.errors import Conflict, NotFound, PersError
from backend.relay import events
from backend.relay.models import Exchange, Operation
from backend.relay.refs import new_ref
from backend.relay.schemas import Movement, Prepared, TransactionCreate
from backend.settings import Settings
from backend.tokens.models import TokenType
from backend.users.models import User
from backend.users.service import link_user, user_id_by_wallet

PREPARED_LIFETIME = 15 * 60  # seconds a prepared group stays valid
MAX_DEADLINE_AHEAD = 24 * 3600


# Active tokens, by id, for `PERS_TOKEN_CACHE_SECONDS`: what the accept path reads of them (contract,
# kind, name, supply cap) never changes once a token is active, and a token that stops being active is
# refused by every API process within that time.
_active_tokens: Expiring[uuid.UUID, TokenType] = Expiring()


class Refused(PersError):
    status = 422


@dataclass(frozen=True)
class Actor:
    """Who asks: an admin, a business (API key or session) or a user (session)."""

    kind: str
    subject_id: uuid.UUID | None


@dataclass
class _Context:
    """What one request looks up once, whatever the number of operations in it."""

    session: Session
    settings: Settings
    scope: TenantScope
    actor: Actor
    tokens: dict[uuid.UUID, TokenType] = field(default_factory=dict)
    businesses: dict[uuid.UUID, Business] = field(default_factory=dict)
    users: dict[uuid.UUID, User] = field(default_factory=dict)
    wallets: dict[str, uuid.UUID | None] = field(default_factory=dict)  # recipients' user ids, by address
    linked: set[uuid.UUID] = field(default_factory=set)

    def token(self, token_id: uuid.UUID) -> TokenType:
        if token_id not in self.tokens:
            token = _active_tokens.get(token_id)
            if token is None:
                token = self.session.get(TokenType, token_id)
                if token is not None and token.status == "active":
                    self.session.expunge(token)  # read-only from here on: no rollback expires it
                    _active_tokens.put(token_id, token, self.settings.token_cache_seconds)
            if token is None or (token.tenant_id, token.environment) != (
                self.scope.tenant_id,
                self.scope.environment,
            ):
                raise NotFound("token not found", code="token_not_found")
            self.tokens[token_id] = token
        return self.tokens[token_id]

    def business(self, business_id: uuid.UUID) -> Business:
        if business_id not in self.businesses:
            business = self.session.get(Business, business_id)
            if business is None or business.tenant_id != self.scope.tenant_id:
                raise NotFound("business not found", code="business_not_found")
            self.businesses[business_id] = business
        return self.businesses[business_id]

    def user_id_by_wallet(self, address: str) -> uuid.UUID | None:
        if address not in self.wallets:
            self.wallets[address] = user_id_by_wallet(self.session, self.scope, address)
        return self.wallets[address]

    def prefetch_wallets(self, addresses: set[str]) -> None:
        """One query for a batch's recipients instead of one per operation."""
        query = select(User.wallet_address, User.id).where(
            User.tenant_id == self.scope.tenant_id,
            User.environment == self.scope.environment,
            User.wallet_address.in_(addresses),
        )
        found = {wallet: user_id for wallet, user_id in self.session.execute(query)}
        self.wallets.update({a: found.get(a) for a in addresses})

    def user(self, user_id: uuid.UUID) -> User:
        if user_id not in self.users:
            user = self.session.get(User, user_id)
            if user is None or (user.tenant_id, user.environment) != (
                self.scope.tenant_id,
                self.scope.environment,
            ):
                raise NotFound("user not found", code="user_not_found")
            self.users[user_id] = user
        return self.users[user_id]


def standard_of(token: TokenType) -> TokenStandard:
    return TokenStandard.CREDIT if token.kind == "credit" else TokenStandard.REWARDS


def domain_of(settings: Settings, token: TokenType) -> Domain:
    """The token's EIP-712 domain from what the platform recorded (a credit's name is its `name()`; the
    rewards contract's is fixed, whatever the token type is called)."""
    network = settings.chain_config().network(_network(settings, token))
    assert token.contract_address is not None
    name = token.name if token.kind == "credit" else ""
    return Domain(standard_of(token), network.chain_id, token.contract_address, name)


def _network(settings: Settings, token: TokenType) -> str:
    network = settings.network_for(token.environment)
    if network is None:
        raise Refused("the environment has no network", code="environment_not_configured", status=409)
    return network


def _active(token: TokenType) -> TokenType:
    if token.status != "active" or token.contract_address is None:
        raise Conflict(f"the token is {token.status}, not active", code="token_not_active")
    return token


def chain_operation(op: Operation) -> ChainOperation:
    return ChainOperation(
        op.from_address, op.to_address, op.amount, bytes.fromhex(op.ref[2:]), op.chain_token_id
    )


def submit_mint(
    session: Session,
    settings: Settings,
    scope: TenantScope,
    *,
    business_id: uuid.UUID,
    token_id: uuid.UUID,
    amount: int,
    to: str | None = None,
    user_id: uuid.UUID | None = None,
) -> Operation:
    """A mint by a business's custodial signer, queued in the caller's transaction."""
    body = TransactionCreate.model_validate(
        {"type": "mint", "token_id": token_id, "amount": str(amount), "to": to, "user_id": user_id}
    )
    return submit(session, settings, scope, Actor(BUSINESS, business_id), body)


def submit_status(
    session: Session,
    settings: Settings,
    scope: TenantScope,
    *,
    business_id: uuid.UUID,
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    ref: str,
    revoke: bool = False,
) -> Operation:
    """One unit of a status given to a user (a mint) or taken back (a burn of theirs: RewardsToken lets
    a minter burn a status id, which its holder cannot move), signed by a business's custodial signer
    with the caller's ref, queued in the caller's transaction."""
    context = _Context(session, settings, scope, Actor(BUSINESS, business_id))
    token = _active(context.token(token_id))
    if token.kind != "status":
        raise Refused("the token is not a status", code="invalid_token_kind")
    body = TransactionCreate.model_validate(
        {"type": "mint", "token_id": token_id, "amount": "1", "user_id": user_id}
    )
    op = _draft(context, token, body)  # the holder and the signer are checked as a mint's
    _platform_signer(context, op, body)
    if revoke:
        op.type, op.from_address, op.to_address = "burn", op.to_address, ZERO_ADDRESS
        op.sender_user_id, op.recipient_user_id = op.recipient_user_id, None
    op.ref = ref
    _flush(session)
    _insert(session, [op])
    events.wake(session)
    return op


def submit(
    session: Session, settings: Settings, scope: TenantScope, actor: Actor, body: TransactionCreate
) -> Operation:
    return accept(_Context(session, settings, scope, actor), body)


def submit_many(
    session: Session, settings: Settings, scope: TenantScope, actor: Actor, bodies: list[TransactionCreate]
) -> list[Operation | PersError]:
    """Each operation accepted or refused on its own (refusals are returned, not raised)."""
    context = _Context(session, settings, scope, actor)
    if actor.kind == BUSINESS:
        context.prefetch_wallets({b.to for b in bodies if b.to is not None})
    results: list[Operation | PersError] = []
    with session.no_autoflush:  # what the checks add goes in with one flush, not one per lookup
        for body in bodies:
            try:
                results.append(accept(context, body, flush=False))
            except PersError as exc:
                results.append(exc)
        reused = _reused_refs(session, [r for r in results if isinstance(r, Operation)])
    for index, result in enumerate(results):
        if isinstance(result, Operation) and result in reused:
            results[index] = _ref_used()
    accepted = [r for r in results if isinstance(r, Operation)]
    _flush(session)  # what the checks added (a business's link to a user it serves)
    if accepted:
        _insert(session, accepted)
        events.wake(session)
    return results


_TABLE = Operation.metadata.tables[Operation.__tablename__]
_INSERT = insert(_TABLE)
_UNSET = dict.fromkeys(_TABLE.c.keys())  # every row names every column (one statement for all)
_COPY = f"COPY {_TABLE.name} ({', '.join(_UNSET)}) FROM STDIN"


def _insert(session: Session, ops: list[Operation]) -> None:
    """Operation rows outside the unit of work (its bookkeeping per object costs more than the rows;
    the objects stay outside the session, as the answer's records): a batch's on Postgres by one
    `COPY`, which binds no parameter per value and runs no statement per row (an executemany cost
    50 µs of Postgres time per row); one row, or SQLite's, by a Core INSERT (prepared once per
    connection, where a `COPY` is parsed each time)."""
    try:
        if len(ops) > 1 and session.get_bind().dialect.name == "postgresql":
            driver = session.connection().connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
                for op in ops:
                    values = vars(op)
                    copy.write_row([values[name] for name in _UNSET])
        else:
            session.execute(_INSERT, [{name: vars(op)[name] for name in _UNSET} for op in ops])
    except (IntegrityError, psycopg.errors.UniqueViolation) as exc:
        # the same signed group, submitted at the same moment elsewhere
        raise _ref_used() from exc


def _ref_used() -> Conflict:
    return Conflict("this signed group was already submitted", code="ref_used")


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # the same signed group, submitted at the same moment elsewhere
        raise _ref_used() from exc


def _reused_refs(session: Session, ops: list[Operation]) -> set[Operation]:
    """The signed operations whose (token, signer, ref) is taken, or repeated among `ops` (the first
    of a repeat goes in)."""
    signed = [op for op in ops if op.signed_by == "external"]
    if not signed:
        return set()
    taken = {
        tuple(row)
        for row in session.execute(
            select(Operation.contract_address, Operation.signer, Operation.ref).where(
                Operation.ref.in_([op.ref for op in signed])
            )
        )
    }
    reused = set()
    for op in signed:
        key = (op.contract_address, op.signer, op.ref)
        if key in taken:
            reused.add(op)
        taken.add(key)
    return reused


def accept(context: _Context, body: TransactionCreate, *, flush: bool = True) -> Operation:
    token = _active(context.token(body.token_id))
    op = _draft(context, token, body)
    if body.signature is not None:
        _take_signature(context, token, op, body)
    else:
        _platform_signer(context, op, body)
    if flush:  # one operation on its own; a batch inserts its rows together
        if _reused_refs(context.session, [op]):
            raise _ref_used()
        _flush(context.session)  # what the checks added (a business's link to a user it serves)
        _insert(context.session, [op])
        events.wake(context.session)
    return op


def _draft(context: _Context, token: TokenType, body: Movement) -> Operation:
    """The operation's parties and amount, checked; its signer is settled by the caller."""
    scope, actor = context.scope, context.actor
    if body.type != "mint" and token.kind == "status":
        raise Refused("a status cannot be transferred or burnt", code="token_locked")
    if body.type == "mint" and token.max_supply is not None and body.amount > token.max_supply:
        raise Refused("the amount is over the token's maximum supply", code="amount_out_of_range")
    if body.to is not None and body.user_id is not None:
        raise Refused("give `to` or `userId`, not both", code="invalid_value")
    recipient = context.user(body.user_id) if body.user_id is not None else None
    to = recipient.wallet_address if recipient is not None else body.to
    if body.type == "burn":
        if to is not None:
            raise Refused("a burn has no recipient", code="invalid_value")
        to = ZERO_ADDRESS
    elif to is None:
        raise Refused("give the recipient: `to` or `userId`", code="missing_field")
    elif int(to, 16) == 0:
        raise Refused("the recipient cannot be the zero address", code="invalid_address")
    sender = ZERO_ADDRESS if body.type == "mint" else body.from_
    if body.type == "mint" and body.from_ is not None:
        raise Refused("a mint has no `from`", code="invalid_value")
    recipient_id = recipient.id if recipient is not None else None
    if recipient_id is None and to != ZERO_ADDRESS and actor.kind == BUSINESS:
        recipient_id = context.user_id_by_wallet(to)
    business = actor.subject_id if actor.kind == BUSINESS else None
    if recipient_id is not None and business is not None and recipient_id not in context.linked:
        link_user(context.session, scope, business, recipient_id)  # the business serves them
        context.linked.add(recipient_id)
    return _new_operation(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        token_type_id=token.id,
        network=_network(context.settings, token),
        contract_address=token.contract_address,
        chain_token_id=token.chain_token_id or 0,
        type=body.type,
        from_address=sender or ZERO_ADDRESS,
        to_address=to,
        amount=body.amount,
        recipient_user_id=recipient_id,
        business_id=actor.subject_id if actor.kind == BUSINESS else body.business_id,
        status="queued",
        created_at=utcnow(),
    )


_OPERATIONS = manager_of_class(Operation)


def _new_operation(**values: object) -> Operation:
    """An operation built the way the ORM builds a row it loads, without `__init__`'s attribute events
    (which cost more than inserting the row), every column set (an unset one is slow to read): it
    never joins a session, its row goes in by a Core INSERT (`_insert`)."""
    if not Operation.__mapper__.configured:  # its attributes need the mapper
        configure_mappers()
    op: Operation = _OPERATIONS.new_instance()
    op.__dict__.update(_UNSET | values)
    return op


def _platform_signer(context: _Context, op: Operation, body: TransactionCreate) -> None:
    """Mints are signed by a business's custodial signer, a managed wallet's moves by its sealed key."""
    actor = context.actor
    if body.ref is not None or body.deadline is not None:
        raise Refused("`ref` and `deadline` come with a `signature`", code="signature_required")
    if op.type == "mint":
        if actor.kind == USER:
            raise PersError("users cannot mint", code="forbidden", status=403)
        if actor.kind == ADMIN and body.business_id is None:
            raise Refused("an admin's mint names the business that signs it", code="business_required")
        if actor.kind == BUSINESS and body.business_id not in (None, actor.subject_id):
            raise PersError("a business mints as itself", code="forbidden", status=403)
        business_id = actor.subject_id if actor.kind == BUSINESS else body.business_id
        assert business_id is not None
        business = context.business(business_id)
        if business.status != "active":
            raise Conflict("the business is suspended", code="business_suspended")
        if business.signer_key_sealed is None:
            raise Refused(
                "this business keeps its own signer: prepare the mint and sign it", code="signature_required"
            )
        op.business_id, op.signer, op.signed_by, op.signer_owner_id = (
            business.id,
            business.signer_address,
            "business",
            business.id,
        )
    else:
        user = context.user(actor.subject_id) if actor.kind == USER and actor.subject_id else None
        if user is None or user.wallet_key_sealed is None:
            raise Refused("a holder's transfer or burn carries its signature", code="signature_required")
        if body.from_ not in (None, user.wallet_address):
            raise PersError("a user moves only their own tokens", code="forbidden", status=403)
        op.from_address, op.sender_user_id = user.wallet_address, user.id
        op.signer, op.signed_by, op.signer_owner_id = user.wallet_address, "user", user.id
    op.ref = new_ref()


def _take_signature(context: _Context, token: TokenType, op: Operation, body: TransactionCreate) -> None:
    """A one-operation group signed elsewhere: the holder (transfer, burn) or a business's own signer
    (mint). Checked here as the contract will check it."""
    if body.ref is None or body.deadline is None or body.signature is None:
        raise Refused("a signed operation carries `ref`, `deadline` and `signature`", code="missing_field")
    _check_deadline(body.deadline)
    if op.type == "mint":
        if context.actor.kind != BUSINESS or context.actor.subject_id is None:
            raise PersError("only a business mints with its own signature", code="forbidden", status=403)
        signer = context.business(context.actor.subject_id).signer_address
    else:
        if body.from_ is None:
            raise Refused("a transfer or burn names its holder in `from`", code="missing_field")
        signer = body.from_
    op.ref, op.deadline, op.signature = body.ref.lower(), body.deadline, body.signature.lower()
    op.signer, op.signed_by = signer, "external"
    if op.type != "mint" and context.actor.kind == USER:
        op.sender_user_id = context.actor.subject_id
    group = [chain_operation(op)]
    signature = bytes.fromhex(body.signature[2:])
    if not verify(domain_of(context.settings, token), signer, group, body.deadline, signature):
        raise Refused("the signature is not the signer's over this operation", code="invalid_signature")


def _check_deadline(deadline: int) -> None:
    now = int(time.time())
    if deadline <= now:
        raise Refused("the signed group's deadline has passed", code="deadline_expired")
    if deadline > now + MAX_DEADLINE_AHEAD:
        raise Refused("the deadline is too far ahead", code="invalid_deadline")


def prepare(
    session: Session, settings: Settings, scope: TenantScope, actor: Actor, body: Movement
) -> Prepared:
    """The typed data of a one-operation group for its signer to sign, with the ref and deadline fixed."""
    context = _Context(session, settings, scope, actor)
    token = _active(context.token(body.token_id))
    op = _draft(context, token, body)
    if body.type == "mint":
        if actor.kind != BUSINESS or actor.subject_id is None:
            raise PersError(
                "only a business prepares a mint for its own signer", code="forbidden", status=403
            )
        signer = context.business(actor.subject_id).signer_address
    else:
        if body.from_ is None:
            raise Refused("a transfer or burn names its holder in `from`", code="missing_field")
        signer = body.from_
    op.ref = new_ref()
    deadline = int(time.time()) + PREPARED_LIFETIME
    document = typed_data(domain_of(settings, token), signer, [chain_operation(op)], deadline)
    return Prepared(typed_data=document, signer=signer, ref=op.ref, deadline=deadline)


@dataclass(frozen=True)
class SignedLeg:
    """An own wallet's burn leg, signed over the typed data `prepare_exchange` answered."""

    exchange_ref: str
    ref: str
    deadline: int
    signature: str


@dataclass(frozen=True)
class ExchangeLegs:
    exchange: Exchange
    burn: Operation
    mint: Operation


def submit_exchange(
    session: Session,
    settings: Settings,
    scope: TenantScope,
    *,
    user_id: uuid.UUID,
    cost_token_id: uuid.UUID,
    cost_amount: int,
    business_id: uuid.UUID,
    reward_token_id: uuid.UUID,
    reward_amount: int,
    signed: SignedLeg | None = None,
) -> ExchangeLegs:
    """A composite `redeem`, queued in the caller's transaction: the user's burn (signed with a managed
    wallet's sealed key, or by the user's own wallet over `prepare_exchange`'s typed data) and the
    business's mint to them (its custodial signer), as two operation rows of one exchange that the
    router runs together or not at all (docs/adr/0002)."""
    burn_context = _Context(session, settings, scope, Actor(USER, user_id))
    cost = _active(burn_context.token(cost_token_id))
    burn_body = TransactionCreate.model_validate(
        {"type": "burn", "token_id": cost_token_id, "amount": str(cost_amount)}
    )
    burn = _draft(burn_context, cost, burn_body)
    if signed is None:
        _platform_signer(burn_context, burn, burn_body)
    else:
        _take_leg(burn_context, cost, burn, signed)
    mint_context = _Context(session, settings, scope, Actor(BUSINESS, business_id))
    reward = _active(mint_context.token(reward_token_id))
    mint_body = TransactionCreate.model_validate(
        {"type": "mint", "token_id": reward_token_id, "amount": str(reward_amount), "user_id": user_id}
    )
    mint = _draft(mint_context, reward, mint_body)
    _platform_signer(mint_context, mint, mint_body)
    if burn.network != mint.network:
        raise Refused("the cost and the reward are on different networks", code="invalid_value")
    exchange = Exchange(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        network=burn.network,
        ref=signed.exchange_ref if signed is not None else new_ref(),
        status="queued",
        created_at=utcnow(),
    )
    session.add(exchange)
    _flush(session)  # an exchange ref submitted before is `ref_used`
    burn.exchange_id = mint.exchange_id = exchange.id
    session.add_all([burn, mint])
    _flush(session)
    events.wake(session)
    return ExchangeLegs(exchange, burn, mint)


def prepare_exchange(
    session: Session,
    settings: Settings,
    scope: TenantScope,
    user_id: uuid.UUID,
    token_id: uuid.UUID,
    amount: int,
) -> tuple[Prepared, str]:
    """The `ExchangeLeg` typed data of a user's burn for a new exchange, and the exchange's ref."""
    context = _Context(session, settings, scope, Actor(USER, user_id))
    token = _active(context.token(token_id))
    wallet = context.user(user_id).wallet_address
    exchange_ref, ref, deadline = new_ref(), new_ref(), int(time.time()) + PREPARED_LIFETIME
    op = ChainOperation(wallet, ZERO_ADDRESS, amount, bytes.fromhex(ref[2:]), token.chain_token_id or 0)
    document = leg_typed_data(
        domain_of(settings, token), wallet, op, deadline, bytes.fromhex(exchange_ref[2:])
    )
    return Prepared(typed_data=document, signer=wallet, ref=ref, deadline=deadline), exchange_ref


def _take_leg(context: _Context, token: TokenType, op: Operation, signed: SignedLeg) -> None:
    """The user's own signature over the burn leg, checked as the token will check it."""
    _check_deadline(signed.deadline)
    user = context.user(context.actor.subject_id)  # type: ignore[arg-type]
    op.from_address, op.sender_user_id = user.wallet_address, user.id
    op.signer, op.signed_by = user.wallet_address, "external"
    op.ref, op.deadline, op.signature = signed.ref.lower(), signed.deadline, signed.signature.lower()
    exchange = bytes.fromhex(signed.exchange_ref[2:])
    message = leg_digest(
        domain_of(context.settings, token), op.signer, chain_operation(op), op.deadline, exchange
    )
    if recover(message, bytes.fromhex(signed.signature[2:])) != to_checksum_address(op.signer):
        raise Refused("the signature is not the holder's over this exchange leg", code="invalid_signature")
