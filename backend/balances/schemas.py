import uuid

from pydantic import Field

from backend.kit.api import Page, Schema
from backend.kit.types import Uint256Out


class TokenBalanceOut(Schema):
    token_id: uuid.UUID
    kind: str
    contract_address: str
    chain_token_id: Uint256Out = Field(description="The ERC-1155 id of a reward or status; 0 for a credit")
    amount: Uint256Out


class BalancesOut(Schema):
    account_address: str
    as_of_block: int = Field(description="The block the balances are valid as of; -1 before any is indexed")
    token_balances: list[TokenBalanceOut]


class HolderOut(Schema):
    address: str
    amount: Uint256Out


class HoldersPage(Page[HolderOut]):
    as_of_block: int = Field(serialization_alias="asOfBlock")
