"""The atomic exchange on both EVMs: the cost burn and the reward mint happen together or not at all,
and one failing exchange leaves its siblings in the batch alone (docs/adr/0002-atomic-exchange.md)."""

from itertools import count

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.chain import exchange, operations, typed_data
from backend.chain.exchange import Exchange, Leg
from backend.chain.operations import Failure, SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Operation, TokenStandard
from tests.conftest import REWARD_ID, STATUS_ID, Tenant
from tests.integration.test_contracts import (
    Reverted,
    credit_balance,
    domain,
    later,
    mint,
    rewards_balance,
    run,
    signed,
)

CREDIT, REWARDS = TokenStandard.CREDIT, TokenStandard.REWARDS
_ids = count(1)


def router_address(t: Tenant) -> str:
    return str(t.chain.contract("TokenFactory", t.factory).functions.exchangeRouter().call())


def ref() -> bytes:
    return typed_data.make_ref(0xE1, next(_ids))


def leg(
    t: Tenant, signer: LocalAccount, standard: TokenStandard, op: Operation, xid: bytes, address: str = ""
) -> Leg:
    dom = domain(t, standard, address or None)
    return exchange.signed_leg(dom, signer.address, signer.key, op, later(), xid)


def credits_for_voucher(t: Tenant, holder: LocalAccount, cost: int, reward_id: int = REWARD_ID) -> Exchange:
    """`holder` burns `cost` credits; the minter mints one `reward_id` to the holder."""
    xid = ref()
    burn = leg(t, holder, CREDIT, Operation(holder.address, ZERO_ADDRESS, cost, ref()), xid)
    reward = leg(t, t.minter, REWARDS, Operation(ZERO_ADDRESS, holder.address, 1, ref(), reward_id), xid)
    return Exchange(xid, t.credit, burn, t.rewards, reward)


def fund(t: Tenant, holder: str, amount: int) -> None:
    assert run(t, CREDIT, [signed(t.minter, domain(t, CREDIT), [mint(holder, amount)])]) == [Failure.NONE]


def ref_used(t: Tenant, address: str, leg_: Leg) -> bool:
    standard = REWARDS if address == t.rewards else CREDIT
    token = operations.token(t.chain, standard, address)
    return bool(token.functions.refUsed(leg_.signer, leg_.op.ref).call())


def test_an_exchange_burns_the_cost_and_mints_the_reward_in_one_transaction(tenant: Tenant) -> None:
    holder = tenant.holders[0]
    fund(tenant, holder.address, 100)
    x = credits_for_voucher(tenant, holder, 30)
    receipt = exchange.send(tenant.chain, router_address(tenant), [x])
    (outcome,) = exchange.outcomes(router_address(tenant), receipt)
    assert (outcome.id, outcome.executed) == (x.id, True)
    assert credit_balance(tenant, holder.address) == 70
    assert rewards_balance(tenant, holder.address, REWARD_ID) == 1
    assert ref_used(tenant, tenant.credit, x.cost) and ref_used(tenant, tenant.rewards, x.reward)
    # Each leg is also an ordinary operation outcome of its token, joined by ref as usual.
    for standard, address, leg_ in ((CREDIT, tenant.credit, x.cost), (REWARDS, tenant.rewards, x.reward)):
        (op,) = operations.outcomes(operations.token(tenant.chain, standard, address), receipt)
        assert (op.ref, op.signer, op.failure) == (leg_.op.ref, leg_.signer, Failure.NONE)
    print(f"exchange_single gas={receipt['gasUsed']}")


def _unregistered(t: Tenant, holder: LocalAccount) -> Exchange:
    return credits_for_voucher(t, holder, 10, reward_id=99)


def _bad_minter_signature(t: Tenant, holder: LocalAccount) -> Exchange:
    x = credits_for_voucher(t, holder, 10)
    forged = Leg(x.reward.signer, x.reward.op, x.reward.deadline, x.cost.signature)
    return Exchange(x.id, x.cost_token, x.cost, x.reward_token, forged)


def _over_the_cap(t: Tenant, holder: LocalAccount) -> Exchange:
    """Credits for capped credits: the reward mint exceeds `maxSupply` (1000)."""
    xid = ref()
    burn = leg(t, holder, CREDIT, Operation(holder.address, ZERO_ADDRESS, 10, ref()), xid)
    op = Operation(ZERO_ADDRESS, holder.address, 1001, ref())
    reward = leg(t, t.minter, CREDIT, op, xid, t.capped_credit)
    return Exchange(xid, t.credit, burn, t.capped_credit, reward)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (_unregistered, "unknown_id"),
        (_bad_minter_signature, "unauthorized"),
        (_over_the_cap, "cap_exceeded"),
    ],
)
def test_when_the_mint_cannot_happen_the_burn_does_not_either(
    tenant: Tenant, make: object, code: str
) -> None:
    holder, other = tenant.holders[0], tenant.holders[1]
    fund(tenant, holder.address, 100)
    fund(tenant, other.address, 100)
    bad = make(tenant, holder)  # type: ignore[operator]
    good = credits_for_voucher(tenant, other, 40)
    receipt = exchange.send(tenant.chain, router_address(tenant), [bad, good])
    failed, executed = exchange.outcomes(router_address(tenant), receipt)
    assert (failed.id, failed.executed, failed.code) == (bad.id, False, code)
    assert failed.failed_ref == bad.reward.op.ref
    # The failed exchange moved nothing and consumed neither ref; its sibling went through.
    assert credit_balance(tenant, holder.address) == 100
    assert not ref_used(tenant, tenant.credit, bad.cost)
    assert not ref_used(tenant, bad.reward_token, bad.reward)
    assert (executed.id, executed.executed) == (good.id, True)
    assert credit_balance(tenant, other.address) == 60
    assert rewards_balance(tenant, other.address, REWARD_ID) == 1


def test_a_paused_reward_contract_undoes_the_burn(tenant: Tenant) -> None:
    holder = tenant.holders[0]
    fund(tenant, holder.address, 100)
    rewards = tenant.chain.contract("RewardsToken", tenant.rewards)
    tenant.chain.w3.eth.wait_for_transaction_receipt(
        rewards.functions.pause().transact({"from": tenant.admin.address})
    )
    x = credits_for_voucher(tenant, holder, 30)
    receipt = exchange.send(tenant.chain, router_address(tenant), [x])
    (outcome,) = exchange.outcomes(router_address(tenant), receipt)
    assert (outcome.executed, outcome.code, outcome.failure) == (False, "exchange_reverted", None)
    assert outcome.reason[:4] == Web3.keccak(text="EnforcedPause()")[:4]
    assert credit_balance(tenant, holder.address) == 100
    assert not ref_used(tenant, tenant.credit, x.cost)


def test_when_the_burn_fails_nothing_is_minted(tenant: Tenant) -> None:
    holder = tenant.holders[0]
    fund(tenant, holder.address, 20)
    x = credits_for_voucher(tenant, holder, 30)
    (outcome,) = exchange.outcomes(
        router_address(tenant), exchange.send(tenant.chain, router_address(tenant), [x])
    )
    assert (outcome.executed, outcome.code) == (False, "insufficient_balance")
    assert outcome.failed_ref == x.cost.op.ref
    assert rewards_balance(tenant, holder.address, REWARD_ID) == 0
    assert credit_balance(tenant, holder.address) == 20


def test_a_leg_runs_only_in_its_exchange_and_only_through_the_router(tenant: Tenant) -> None:
    holder = tenant.holders[0]
    fund(tenant, holder.address, 100)
    x = credits_for_voucher(tenant, holder, 30)
    # Paired into another exchange id, the signatures no longer verify.
    moved = Exchange(ref(), x.cost_token, x.cost, x.reward_token, x.reward)
    (outcome,) = exchange.outcomes(
        router_address(tenant), exchange.send(tenant.chain, router_address(tenant), [moved])
    )
    assert (outcome.executed, outcome.code) == (False, "unauthorized")
    # The burn leg's signature is no `Operations` signature: plain `execute` refuses it.
    group = SignedGroup(holder.address, [x.cost.op], x.cost.deadline, x.cost.signature)
    assert run(tenant, CREDIT, [group]) == [Failure.UNAUTHORIZED]
    # A relayer calling the token directly, and anyone but a relayer calling the router, are refused.
    token = operations.token(tenant.chain, CREDIT, tenant.credit)
    with pytest.raises(Reverted):
        tenant.chain.call(token, "executeLeg", x.id, x.cost.as_abi())
    router = exchange.router(tenant.chain, router_address(tenant))
    with pytest.raises(Reverted):
        router.functions.execute([x.as_abi()]).transact({"from": holder.address})
    assert credit_balance(tenant, holder.address) == 100
    # The status kind stays the tenant's: a holder cannot burn a status id as an exchange cost either.
    burn_status = Operation(holder.address, ZERO_ADDRESS, 1, ref(), STATUS_ID)
    status_burn = leg(tenant, holder, REWARDS, burn_status, x.id)
    as_cost = Exchange(x.id, tenant.rewards, status_burn, x.reward_token, x.reward)
    (outcome,) = exchange.outcomes(
        router_address(tenant), exchange.send(tenant.chain, router_address(tenant), [as_cost])
    )
    assert (outcome.executed, outcome.code) == (False, "unauthorized")


def test_the_mirrored_budget_matches_the_contract(tenant: Tenant) -> None:
    router = exchange.router(tenant.chain, router_address(tenant))
    assert router.functions.EXCHANGE_GAS().call() == exchange.EXCHANGE_GAS
    token = operations.token(tenant.chain, CREDIT, tenant.credit)
    assert token.functions.LEG_TYPEHASH().call() == exchange.LEG_TYPEHASH
