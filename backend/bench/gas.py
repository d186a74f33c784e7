"""Gas per operation, single against batched, and tenant onboarding through clones against full
deployment, measured on a fresh platform deployment."""

import time
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr

from backend.chain import exchange, operations, typed_data
from backend.chain.client import Chain, dev_account
from backend.chain.deploy import (
    ROUTER,
    ContractKind,
    CreditSpec,
    TokenKind,
    create_tenant_contracts,
    deploy_platform,
    tenant_key,
)
from backend.chain.operations import SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Domain, Operation, TokenStandard

BATCH = 100
RECIPIENTS = BATCH + 1
_URI = "https://meta.pers.example/acme/{id}.json"


class _Signer:
    """A minter whose refs come from one namespace, consecutively, as the platform hands them out."""

    def __init__(self, account: LocalAccount, domain: Domain, deadline: int) -> None:
        self.account, self.domain, self.deadline = account, domain, deadline
        self.sequence = 0

    def group(self, ops: list[tuple[str, str, int]]) -> SignedGroup:
        built = []
        for from_, to, amount in ops:
            self.sequence += 1
            built.append(Operation(from_, to, amount, typed_data.make_ref(0xB3AC4, self.sequence)))
        digest = typed_data.digest(self.domain, self.account.address, built, self.deadline)
        return SignedGroup(
            self.account.address, built, self.deadline, typed_data.sign(digest, self.account.key)
        )


def run(chain: Chain) -> dict[str, Any]:
    platform = deploy_platform(chain)
    factory = platform.contracts["TokenFactory"]
    admin, minter = dev_account(1), Account.create()
    credit_spec = CreditSpec(bytes(32), "Acme Points", "ACME")
    created, onboarding = create_tenant_contracts(
        chain, factory, tenant_key("bench", "test"), admin.address, [minter.address], _URI, (credit_spec,)
    )
    credit = created[ContractKind.CREDIT][0]
    deadline = int(time.time()) + 3600
    signer = _Signer(minter, operations.domain(chain, TokenStandard.CREDIT, credit), deadline)
    holders = [Account.create() for _ in range(RECIPIENTS)]

    def execute(groups: list[SignedGroup]) -> int:
        (receipt,) = operations.submit(chain, TokenStandard.CREDIT, credit, groups).receipts
        return int(receipt["gasUsed"])

    # Every recipient already holds the token, so balances are updated, not created.
    execute([signer.group([(ZERO_ADDRESS, h.address, 1000) for h in holders])])
    mint_single = execute([signer.group([(ZERO_ADDRESS, holders[0].address, 10)])])
    batch = execute([signer.group([(ZERO_ADDRESS, h.address, 10) for h in holders[1:]])])
    separately_signed = execute([signer.group([(ZERO_ADDRESS, h.address, 10)]) for h in holders[1:]])
    sender = _Signer(holders[0], signer.domain, deadline)
    transfer = execute([sender.group([(holders[0].address, holders[1].address, 5)])])

    exchanges = _exchanges(chain, platform.contracts[ROUTER], created, admin, minter, holders, deadline)
    full = _full_deployment(chain, admin, minter, credit_spec, platform.contracts[ROUTER])
    clones = int(onboarding["gasUsed"])
    return {
        "network": chain.network.name,
        "mint_single": mint_single,
        "mint_batch100_per_op": batch // BATCH,
        "mint_batch100_separately_signed_per_op": separately_signed // BATCH,
        "transfer_signed": transfer,
        "exchange_single": exchanges[0],
        "exchange_batch10_per_exchange": exchanges[1] // 10,
        "onboarding_clones": clones,
        "onboarding_full": full,
        "ratios": {
            "batch_per_op_vs_single": round(batch / BATCH / mint_single, 4),
            "onboarding_clones_vs_full": round(clones / full, 4),
        },
    }


def _exchanges(
    chain: Chain,
    router: str,
    created: dict[ContractKind, list[Any]],
    admin: LocalAccount,
    minter: LocalAccount,
    holders: list[LocalAccount],
    deadline: int,
) -> tuple[int, int]:
    """Gas of one exchange alone (a holder's credits for a new reward id), and of a batch of 10."""
    credit, rewards = created[ContractKind.CREDIT][0], created[ContractKind.REWARDS][0]
    registry = chain.contract("RewardsToken", rewards)
    chain.send(
        {"to": rewards, "data": HexStr(registry.encode_abi("registerId", args=[7, TokenKind.REWARD]))}, admin
    )
    credit_domain = operations.domain(chain, TokenStandard.CREDIT, credit)
    rewards_domain = operations.domain(chain, TokenStandard.REWARDS, rewards)
    sequence = iter(range(1, 1_000))

    def one(holder: LocalAccount) -> exchange.Exchange:
        xid = typed_data.make_ref(0xE8C4, next(sequence))
        burn = Operation(holder.address, ZERO_ADDRESS, 10, typed_data.make_ref(0xB0, next(sequence)))
        mint = Operation(ZERO_ADDRESS, holder.address, 1, typed_data.make_ref(0xB1, next(sequence)), 7)
        return exchange.Exchange(
            xid,
            credit,
            exchange.signed_leg(credit_domain, holder.address, holder.key, burn, deadline, xid),
            rewards,
            exchange.signed_leg(rewards_domain, minter.address, minter.key, mint, deadline, xid),
        )

    single = exchange.send(chain, router, [one(holders[0])])
    batch = exchange.send(chain, router, [one(h) for h in holders[1:11]])
    return int(single["gasUsed"]), int(batch["gasUsed"])


def _full_deployment(
    chain: Chain, admin: LocalAccount, minter: LocalAccount, spec: CreditSpec, router: str
) -> int:
    """The same two contracts deployed in full and initialised as the factory does for a clone."""
    total = 0
    for name, args in (
        (
            "CreditToken",
            [spec.name, spec.symbol, spec.decimals, spec.max_supply, admin.address, [minter.address]],
        ),
        ("RewardsToken", [_URI, admin.address, [minter.address]]),
    ):
        address, deployed = chain.deploy(name, router)
        contract = chain.contract(name, address)
        initialised = chain.send(
            {"to": address, "data": HexStr(contract.encode_abi("initialize", args=args))}
        )
        total += int(deployed["gasUsed"]) + int(initialised["gasUsed"])
    return total
