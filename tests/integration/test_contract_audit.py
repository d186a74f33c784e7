"""The audit of issue 6 replayed on both EVMs (EIP-7702 on anvil): each attack, and that it now fails."""

from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from backend.chain import operations, typed_data
from backend.chain.artifacts import artifact
from backend.chain.deploy import deploy_platform
from backend.chain.operations import SIGNATURE_GAS, Failure, SignedGroup
from backend.chain.typed_data import Operation
from tests.conftest import REWARD_ID, STATUS_ID, Tenant
from tests.integration.test_contracts import (
    CREDIT,
    REWARDS,
    Reverted,
    credit_balance,
    domain,
    later,
    mint,
    ref,
    rewards_balance,
    run,
    signed,
)

# What a group whose signer has code may add to a batch beyond the ERC-1271 call's budget: its own
# calldata, hashing, signature recovery attempt, code-size check and outcome event (docs/adr/0001).
CONTRACT_GROUP_OVERHEAD = 20_000


def deploy(t: Tenant, name: str, *args: Any) -> str:
    built = artifact(name)
    factory = t.chain.w3.eth.contract(abi=built["abi"], bytecode=built["bytecode"])
    tx = factory.constructor(*args).transact({"from": t.admin.address})
    address = t.chain.w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    assert address is not None
    return address


def wait(t: Tenant, tx: bytes) -> TxReceipt:
    return t.chain.w3.eth.wait_for_transaction_receipt(tx)


def reverts(t: Tenant, call: Any, sender: str, gas: int = 1_000_000) -> None:
    """Sends `call` with a fixed gas limit (no estimate to stop it) and checks it reverted on chain."""
    try:
        receipt = wait(t, call.transact({"from": sender, "gas": gas}))
    except Reverted:
        return  # eth-tester refuses it at once
    assert receipt["status"] == 0


def one_receipt(t: Tenant, standard: typed_data.TokenStandard, groups: list[SignedGroup]) -> TxReceipt:
    address = t.credit if standard is CREDIT else t.rewards
    submission = operations.submit(t.chain, standard, address, groups)
    assert not submission.refused
    (receipt,) = submission.receipts
    return receipt


def failures(t: Tenant, standard: typed_data.TokenStandard, receipt: TxReceipt) -> list[Failure]:
    contract = operations.token(t.chain, standard, t.credit if standard is CREDIT else t.rewards)
    return [o.failure for o in operations.outcomes(contract, receipt)]


def honest_and_hostile_gas(
    t: Tenant, honest: list[SignedGroup], hostile: SignedGroup
) -> tuple[int, int, list[Failure]]:
    """Gas of the honest groups alone, and of the hostile group followed by them, from the same state."""
    snapshot = t.chain.rpc("evm_snapshot")
    alone = int(one_receipt(t, CREDIT, honest)["gasUsed"])
    t.chain.rpc("evm_revert", snapshot)
    receipt = one_receipt(t, CREDIT, [hostile, *honest])
    return alone, int(receipt["gasUsed"]), failures(t, CREDIT, receipt)


# Finding 1: a contract signer burning gas in isValidSignature.


def test_a_hostile_contract_signer_costs_a_batch_no_more_than_its_validation_budget(tenant: Tenant) -> None:
    token = operations.token(tenant.chain, CREDIT, tenant.credit)
    assert token.functions.SIGNATURE_GAS().call() == SIGNATURE_GAS
    burner = deploy(tenant, "GasBurner")
    dom = domain(tenant, CREDIT)
    holders = [h.address for h in tenant.holders]
    # The audit's worst case: with 60 honest groups behind it, the batch could not be sent at all.
    honest = [signed(tenant.minter, dom, [mint(holders[i % 3], 1)]) for i in range(60)]
    for signature in (b"\1" * 65, b"\2" * 300):  # tried as ECDSA first, and not even a candidate
        base = tenant.chain.rpc("evm_snapshot")
        hostile = SignedGroup(burner, [Operation(burner, holders[0], 1, ref())], later(), signature)
        alone, batched, outcome = honest_and_hostile_gas(tenant, honest, hostile)
        assert outcome == [Failure.UNAUTHORIZED] + [Failure.NONE] * 60
        assert batched - alone <= SIGNATURE_GAS + CONTRACT_GROUP_OVERHEAD
        assert [credit_balance(tenant, h) for h in holders] == [20, 20, 20]
        tenant.chain.rpc("evm_revert", base)
    # The relay screens groups before batching: the hostile signer's group is left out.
    fresh = signed(tenant.minter, dom, [mint(holders[0], 1)])
    hostile = SignedGroup(burner, [Operation(burner, holders[0], 1, ref())], later(), b"\1" * 65)
    assert operations.screen(tenant.chain, dom, [hostile, fresh]) == ([fresh], [hostile])


def test_an_eip7702_delegated_holder_signs_as_an_eoa_and_cannot_burn_a_batch(anvil: Tenant) -> None:
    chain, holder, bob = anvil.chain, anvil.holders[0], anvil.holders[1].address
    dom = domain(anvil, CREDIT)
    assert run(anvil, CREDIT, [signed(anvil.minter, dom, [mint(holder.address, 100)])]) == [Failure.NONE]
    honest = [signed(holder, dom, [Operation(holder.address, bob, 10, ref())])]
    honest += [signed(anvil.minter, dom, [mint(bob, 1)]) for _ in range(20)]
    snapshot = chain.rpc("evm_snapshot")
    undelegated = int(one_receipt(anvil, CREDIT, honest)["gasUsed"])
    chain.rpc("evm_revert", snapshot)

    burner = deploy(anvil, "GasBurner")
    designator = "0xef0100" + burner[2:].lower()
    chain.rpc("anvil_setCode", holder.address, designator)
    assert chain.w3.eth.get_code(holder.address).to_0x_hex() == designator
    # Its own signature still recovers to it: no call into the delegate, the same gas as before.
    assert operations.screen(chain, dom, honest) == (honest, [])
    receipt = one_receipt(anvil, CREDIT, honest)
    assert failures(anvil, CREDIT, receipt) == [Failure.NONE] * 21
    assert int(receipt["gasUsed"]) <= undelegated
    assert credit_balance(anvil, bob) == 30
    # A signature it does not recover to is asked of the delegate, within the budget.
    forged = signed(anvil.minter, dom, [Operation(holder.address, bob, 10, ref())])
    forged = SignedGroup(holder.address, forged.ops, forged.deadline, forged.signature)
    more = [signed(anvil.minter, dom, [mint(bob, 1)]) for _ in range(20)]
    alone, batched, outcome = honest_and_hostile_gas(anvil, more, forged)
    assert outcome == [Failure.UNAUTHORIZED] + [Failure.NONE] * 20
    assert batched - alone <= SIGNATURE_GAS + CONTRACT_GROUP_OVERHEAD


# Finding 2: forged outcome events and re-entrant calls.


def test_look_alike_events_and_reentrant_calls_change_no_outcome(tenant: Tenant) -> None:
    chain = tenant.chain
    receiver_address = deploy(tenant, "LookAlikeReceiver")
    receiver = chain.contract("LookAlikeReceiver", receiver_address)  # type: ignore[arg-type]
    victim = ref()
    wait(tenant, receiver.functions.arm(victim, tenant.minter.address).transact())
    # Registered as a relayer, so only the re-entrancy guard stands between it and `execute`.
    factory = chain.contract("TokenFactory", tenant.factory)
    chain.call(factory, "setRelayer", receiver_address, True)
    real = mint(receiver_address, 1, REWARD_ID)
    receipt = one_receipt(tenant, REWARDS, [signed(tenant.minter, domain(tenant, REWARDS), [real])])

    assert sum(1 for log in receipt["logs"] if log["address"] == receiver_address) == 2  # the look-alikes
    token = operations.token(chain, REWARDS, tenant.rewards)
    (outcome,) = operations.outcomes(token, receipt)
    assert (outcome.ref, outcome.signer, outcome.failure) == (real.ref, tenant.minter.address, Failure.NONE)
    assert operations.settled(token, [receipt]) == {(tenant.minter.address, real.ref): outcome}
    assert not token.functions.refUsed(tenant.minter.address, victim).call()
    assert not receiver.functions.reentered().call()
    assert receiver.functions.reentryError().call() == Web3.keccak(text="ReentrancyGuardReentrantCall()")[:4]
    assert rewards_balance(tenant, receiver_address, REWARD_ID) == 1


def test_outcomes_follow_their_movements_and_only_consuming_ones_settle(tenant: Tenant) -> None:
    alice, bob = tenant.holders[0].address, tenant.holders[1].address
    dom = domain(tenant, CREDIT)
    twice = mint(alice, 3)
    first = signed(tenant.minter, dom, [twice, mint(bob, 0)])
    stranger = Account.from_key(Web3.keccak(text="stranger"))
    expired = signed(tenant.minter, dom, [mint(bob, 4)], deadline=1)
    groups = [
        first,
        first,
        signed(stranger, dom, [mint(bob, 1)]),
        expired,
        signed(tenant.minter, dom, [mint(bob, 2)]),
    ]
    receipt = one_receipt(tenant, CREDIT, groups)
    token = operations.token(tenant.chain, CREDIT, tenant.credit)
    found = operations.outcomes(token, receipt)
    assert [o.failure for o in found] == [
        Failure.NONE,
        Failure.INVALID,
        Failure.REF_USED,
        Failure.REF_USED,
        Failure.UNAUTHORIZED,
        Failure.EXPIRED,
        Failure.NONE,
    ]
    # Each success is the token's next log after its Transfer.
    transfers = {log["logIndex"] for log in token.events.Transfer().process_receipt(receipt, errors=DISCARD)}
    assert all(o.log_index - 1 in transfers for o in found if o.failure is Failure.NONE)
    final = operations.settled(token, [receipt])
    assert {key: o.failure for key, o in final.items()} == {
        (tenant.minter.address, twice.ref): Failure.NONE,
        (tenant.minter.address, first.ops[1].ref): Failure.INVALID,
        (tenant.minter.address, groups[4].ops[0].ref): Failure.NONE,
    }
    with pytest.raises(Exception, match="settled twice"):
        operations.settled(token, [receipt, receipt])


# Finding 3: the receiver's gas.


def test_an_85k_gas_receiver_is_served_and_a_starved_call_reverts_without_burning_the_ref(
    tenant: Tenant,
) -> None:
    chain = tenant.chain
    receiver = deploy(tenant, "HungryReceiver", 85_000)
    token = operations.token(chain, REWARDS, tenant.rewards)
    assert token.functions.RECEIVER_GAS().call() == operations.RECEIVER_GAS
    dom = domain(tenant, REWARDS)
    group = signed(tenant.minter, dom, [mint(receiver, 1, REWARD_ID)])
    call = token.functions.execute([group.as_abi(REWARDS)])
    estimate = call.estimate_gas({"from": chain.relayer.address})
    # Sent with less than the node's estimate, the receiver would have failed: the call reverts instead.
    reverts(tenant, call, chain.relayer.address, gas=estimate - 30_000)
    assert not token.functions.refUsed(tenant.minter.address, group.ops[0].ref).call()

    receipt = one_receipt(tenant, REWARDS, [group])
    assert failures(tenant, REWARDS, receipt) == [Failure.NONE]
    assert rewards_balance(tenant, receiver, REWARD_ID) == 1
    # The platform's gas limit carries the receiver's whole allowance on top of the estimate.
    limit = chain.w3.eth.get_transaction(receipt["transactionHash"])["gas"]
    assert limit >= estimate + operations.RECEIVER_GAS


# Finding 4: running signed operations early, out of order, or after their signer cancelled them.


def test_a_front_runner_cannot_burn_a_ref(tenant: Tenant) -> None:
    chain = tenant.chain
    alice, bob, runner = tenant.holders[0], tenant.holders[1].address, tenant.holders[2].address
    dom = domain(tenant, CREDIT)
    batch = [
        signed(tenant.minter, dom, [mint(alice.address, 10)]),
        signed(alice, dom, [Operation(alice.address, bob, 10, ref())]),
    ]
    token = operations.token(chain, CREDIT, tenant.credit)
    reverts(tenant, token.functions.execute([batch[1].as_abi(CREDIT)]), runner)
    assert not token.functions.refUsed(alice.address, batch[1].ops[0].ref).call()
    assert run(tenant, CREDIT, batch) == [Failure.NONE, Failure.NONE]
    assert credit_balance(tenant, bob) == 10


def test_one_registry_transaction_adds_or_removes_a_relayer_for_every_tenant(tenant: Tenant) -> None:
    chain = tenant.chain
    factory = chain.contract("TokenFactory", tenant.factory)
    # deploy_platform made the relayer the owner and registered it, and registers it again if it is not.
    assert factory.functions.owner().call() == chain.relayer.address
    assert factory.functions.isRelayer(chain.relayer.address).call()
    chain.call(factory, "setRelayer", chain.relayer.address, False)
    assert not deploy_platform(chain).deployed_now
    assert factory.functions.isRelayer(chain.relayer.address).call()
    newcomer = tenant.holders[2].address
    with pytest.raises(Reverted):
        factory.functions.setRelayer(newcomer, True).transact({"from": newcomer})
    receipt = chain.call(factory, "setRelayer", newcomer, True)
    (event,) = factory.events.RelayerSet().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["account"], event["args"]["allowed"]) == (newcomer, True)
    alice = tenant.holders[0].address
    for standard, address, op in (
        (CREDIT, tenant.credit, mint(alice, 1)),
        (CREDIT, tenant.capped_credit, mint(alice, 1)),
        (REWARDS, tenant.rewards, mint(alice, 1, REWARD_ID)),
    ):
        group = signed(tenant.minter, domain(tenant, standard, address), [op])
        contract = operations.token(chain, standard, address)
        wait(tenant, contract.functions.execute([group.as_abi(standard)]).transact({"from": newcomer}))
        assert contract.functions.refUsed(tenant.minter.address, op.ref).call()
    chain.call(factory, "setRelayer", newcomer, False)
    group = signed(tenant.minter, domain(tenant, CREDIT), [mint(alice, 1)])
    reverts(
        tenant,
        operations.token(chain, CREDIT, tenant.credit).functions.execute([group.as_abi(CREDIT)]),
        newcomer,
    )


def test_a_cancelled_ref_never_executes(tenant: Tenant) -> None:
    alice, bob = tenant.holders[0], tenant.holders[1].address
    dom = domain(tenant, CREDIT)
    assert run(tenant, CREDIT, [signed(tenant.minter, dom, [mint(alice.address, 10)])]) == [Failure.NONE]
    cancelled, kept = Operation(alice.address, bob, 4, ref()), Operation(alice.address, bob, 5, ref())
    index = int.from_bytes(cancelled.ref, "big")
    word, mask = index >> 8, 1 << (index & 0xFF)
    token = operations.token(tenant.chain, CREDIT, tenant.credit)
    receipt = wait(tenant, token.functions.cancelRefs(word, mask).transact({"from": alice.address}))
    (event,) = token.events.RefsCancelled().process_receipt(receipt, errors=DISCARD)
    assert event["args"] == {"signer": alice.address, "word": word, "mask": mask}
    assert token.functions.refUsed(alice.address, cancelled.ref).call()
    assert run(tenant, CREDIT, [signed(alice, dom, [cancelled]), signed(alice, dom, [kept])]) == [
        Failure.REF_USED,
        Failure.NONE,
    ]
    assert (credit_balance(tenant, alice.address), credit_balance(tenant, bob)) == (5, 5)


# Finding 5: balance overflow, and what "unlimited" means.


def test_an_overflowing_balance_fails_its_operation_alone(tenant: Tenant) -> None:
    alice, bob = tenant.holders[0], tenant.holders[1].address
    dom = domain(tenant, REWARDS)
    top = 2**256 - 1
    assert run(tenant, REWARDS, [signed(tenant.minter, dom, [mint(alice.address, top, REWARD_ID)])]) == [
        Failure.NONE
    ]
    batch = [
        signed(tenant.minter, dom, [mint(alice.address, 1, REWARD_ID)]),
        signed(tenant.minter, domain(tenant, REWARDS), [mint(bob, 5, REWARD_ID), mint(bob, 2, STATUS_ID)]),
    ]
    assert run(tenant, REWARDS, batch) == [Failure.OVERFLOW, Failure.NONE, Failure.NONE]
    back = Operation(bob, alice.address, 5, ref(), REWARD_ID)
    assert run(tenant, REWARDS, [signed(tenant.holders[1], dom, [back])]) == [Failure.OVERFLOW]
    assert (rewards_balance(tenant, alice.address, REWARD_ID), rewards_balance(tenant, bob, REWARD_ID)) == (
        top,
        5,
    )


def test_an_unlimited_credit_is_capped_at_2_to_the_248_minus_1(tenant: Tenant) -> None:
    holder = tenant.holders[0].address
    token = operations.token(tenant.chain, CREDIT, tenant.credit)
    unlimited = 2**248 - 1
    assert token.functions.maxSupply().call() == 0
    assert token.functions.UNLIMITED_SUPPLY().call() == unlimited
    ops = [mint(holder, 2**256 - 1), mint(holder, unlimited + 1), mint(holder, unlimited), mint(holder, 1)]
    assert run(tenant, CREDIT, [signed(tenant.minter, domain(tenant, CREDIT), ops)]) == [
        Failure.CAP_EXCEEDED,
        Failure.CAP_EXCEEDED,
        Failure.NONE,
        Failure.CAP_EXCEEDED,
    ]


# Finding 6: one signature accepted by two signers.


def test_one_signature_under_two_signers_executes_once(tenant: Tenant) -> None:
    chain, minter = tenant.chain, tenant.minter
    wallet = deploy(tenant, "OwnedWallet", minter.address)
    token = operations.token(chain, CREDIT, tenant.credit)
    role = token.functions.MINTER_ROLE().call()
    wait(tenant, token.functions.grantRole(role, wallet).transact({"from": tenant.admin.address}))
    alice = tenant.holders[0].address
    dom = domain(tenant, CREDIT)
    by_key = signed(minter, dom, [mint(alice, 5)])
    as_wallet = SignedGroup(wallet, by_key.ops, by_key.deadline, by_key.signature)
    assert operations.screen(chain, dom, [by_key, as_wallet]) == ([by_key], [as_wallet])
    assert run(tenant, CREDIT, [by_key, as_wallet]) == [Failure.NONE, Failure.UNAUTHORIZED]
    assert credit_balance(tenant, alice) == 5
    # Signed for the wallet, the owner's signature is the wallet's (ERC-1271).
    ops, deadline = [mint(alice, 2)], later()
    signature = typed_data.sign(typed_data.digest(dom, wallet, ops, deadline), minter.key)
    for_wallet = SignedGroup(wallet, ops, deadline, signature)
    assert operations.screen(chain, dom, [for_wallet]) == ([for_wallet], [])
    assert run(tenant, CREDIT, [for_wallet]) == [Failure.NONE]
    assert credit_balance(tenant, alice) == 7


# Also: status ids for standard tools.


def test_status_ids_are_soulbound_for_erc5633_tools(tenant: Tenant) -> None:
    token = tenant.chain.contract("RewardsToken", tenant.rewards)
    assert token.functions.supportsInterface(bytes.fromhex("911ec470")).call()
    assert token.functions.supportsInterface(bytes.fromhex("d9b67a26")).call()  # ERC-1155 still
    assert token.functions.isSoulbound(STATUS_ID).call() and not token.functions.isSoulbound(REWARD_ID).call()
    receipt = wait(tenant, token.functions.registerId(7, 2).transact({"from": tenant.admin.address}))
    (event,) = token.events.Soulbound().process_receipt(receipt, errors=DISCARD)
    assert event["args"] == {"id": 7, "bounded": True}
    receipt = wait(tenant, token.functions.registerId(8, 1).transact({"from": tenant.admin.address}))
    (event,) = token.events.Soulbound().process_receipt(receipt, errors=DISCARD)
    assert event["args"] == {"id": 8, "bounded": False}
    assert token.functions.isSoulbound(7).call() and not token.functions.isSoulbound(8).call()
