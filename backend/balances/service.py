"""A tenant environment's tokens as the mirror knows them (by contract and chain token id), and the
balances, supplies and holders of those tokens. Only the caller's tokens are ever read: another
tenant's contracts on the same chain stay out of every answer."""

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.balances.schemas import BalancesOut, HolderOut, HoldersPage, TokenBalanceOut
from backend.kit.api import PageMeta, Paging
from backend.kit.scope import scope_parameters
from backend.tenants.models import TenantEnvironment
from backend.tokens.models import TokenType
from indexer import reads


@dataclass(frozen=True)
class Ledger:
    """The environment's network, its on-chain tokens by (lowercase contract, chain token id), and
    every contract of the tenant there with its kind, `credit` (ERC-20) or `rewards` (ERC-1155): the
    books' and those the mirror found through the factory."""

    network: str | None
    tokens: dict[tuple[str, int], TokenType]
    kinds: dict[str, str]

    @property
    def contracts(self) -> list[str]:
        return sorted(self.kinds)

    def token(self, contract: str, token_id: int) -> TokenType | None:
        return self.tokens.get((contract.lower(), token_id))


# The environment and its on-chain token types in one round trip, built once (building a statement
# costs more CPU than running it): a balance read is one of these and one read of the mirror.
_LEDGER = (
    select(
        TenantEnvironment.network, TenantEnvironment.tenant_key, TenantEnvironment.rewards_address, TokenType
    )
    .outerjoin(
        TokenType,
        (TokenType.tenant_id == TenantEnvironment.tenant_id)
        & (TokenType.environment == TenantEnvironment.environment)
        & TokenType.contract_address.is_not(None),
    )
    .where(
        TenantEnvironment.tenant_id == bindparam("scope_tenant"),
        TenantEnvironment.environment == bindparam("scope_environment"),
    )
)


def ledger(session: Session, scope: TenantScope, *, discovered: bool = False) -> Ledger:
    """The books' tokens and contracts; with `discovered`, also the tenant's contracts the mirror found
    through the factory that the books do not name (the audit reads every one; a balance shows tokens)."""
    rows = session.execute(_LEDGER, scope_parameters(scope)).all()
    if not rows or rows[0].network is None:
        return Ledger(None, {}, {})
    network, key, rewards = rows[0].network, rows[0].tenant_key, rows[0].rewards_address
    tokens = {(str(t.contract_address).lower(), t.chain_token_id or 0): t for *_, t in rows if t is not None}
    kinds = {}
    if discovered:
        kinds = {c.address: c.kind for c in reads.tenant_contracts(session, network, key)}
    kinds |= {contract: "credit" if t.kind == "credit" else "rewards" for (contract, _), t in tokens.items()}
    if rewards is not None:
        kinds[rewards.lower()] = "rewards"
    return Ledger(network, tokens, kinds)


def balances(session: Session, scope: TenantScope, address: str) -> BalancesOut:
    """`address`'s non-zero balances of the environment's tokens."""
    books = ledger(session, scope)
    if books.network is None:
        return BalancesOut(account_address=address, as_of_block=-1, token_balances=[])
    found = reads.balances(session, books.network, address, books.contracts)
    shown = []
    for held in found.balances:
        token = books.token(held.contract, held.token_id)
        if token is not None:  # an id the tenant never registered as a token type is not its token
            shown.append(
                TokenBalanceOut(
                    token_id=token.id,
                    kind=token.kind,
                    contract_address=str(token.contract_address),
                    chain_token_id=held.token_id,
                    amount=held.amount,
                )
            )
    return BalancesOut(account_address=address, as_of_block=found.as_of_block, token_balances=shown)


def supply(session: Session, scope: TenantScope, token: TokenType) -> reads.TokenSupply | None:
    """The token's supply and holder count, once it is on chain."""
    books = ledger(session, scope)
    if books.network is None or token.contract_address is None:
        return None
    return reads.supply(session, books.network, token.contract_address, token.chain_token_id or 0)


def holders(session: Session, scope: TenantScope, token: TokenType, paging: Paging) -> HoldersPage:
    """A page of the token's holders, largest balance first."""
    books = ledger(session, scope)
    rows: list[reads.Holder] = []
    total, block = 0, -1
    if books.network is not None and token.contract_address is not None:
        block = reads.as_of_block(session, books.network)
        rows, total = reads.holders(
            session,
            books.network,
            token.contract_address,
            token.chain_token_id or 0,
            paging.page,
            paging.limit,
        )
    return HoldersPage(
        data=[HolderOut(address=r.holder, amount=r.amount) for r in rows],
        meta=PageMeta(page=paging.page, limit=paging.limit, total=total),
        as_of_block=block,
    )
