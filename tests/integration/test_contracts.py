"""Contract behaviour on both EVMs (embedded py-evm and anvil), through the chain layer."""

import time
from itertools import count

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from backend.chain import operations, typed_data
from backend.chain.operations import Failure, SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Domain, Operation, TokenStandard
from backend.kit.errors import ChainError, GasCapExceeded
from tests.conftest import REWARD_ID, STATUS_ID, Tenant

CREDIT, REWARDS = TokenStandard.CREDIT, TokenStandard.REWARDS
_refs = count(1)
# A revert as web3 reports it from anvil, as eth-tester reports it, or as the chain layer does.
Reverted = (ContractLogicError, ContractCustomError, TransactionFailed, ChainError)


def ref() -> bytes:
    return typed_data.make_ref(0xACE, next(_refs))


def later() -> int:
    return int(time.time()) + 3600


def domain(t: Tenant, standard: TokenStandard, address: str | None = None) -> Domain:
    return operations.domain(t.chain, standard, address or (t.credit if standard is CREDIT else t.rewards))


def signed(
    signer: LocalAccount, dom: Domain, ops: list[Operation], deadline: int | None = None
) -> SignedGroup:
    deadline = later() if deadline is None else deadline
    signature = typed_data.sign(typed_data.digest(dom, signer.address, ops, deadline), signer.key)
    return SignedGroup(signer.address, ops, deadline, signature)


def run(
    t: Tenant, standard: TokenStandard, groups: list[SignedGroup], address: str | None = None
) -> list[Failure]:
    address = address or (t.credit if standard is CREDIT else t.rewards)
    receipts = operations.submit(t.chain, standard, address, groups).receipts
    contract = operations.token(t.chain, standard, address)
    return [o.failure for r in receipts for o in operations.outcomes(contract, r)]


def mint(to: str, amount: int, token_id: int = 0) -> Operation:
    return Operation(ZERO_ADDRESS, to, amount, ref(), token_id)


def credit_balance(t: Tenant, holder: str, address: str | None = None) -> int:
    return int(t.chain.contract("CreditToken", address or t.credit).functions.balanceOf(holder).call())


def rewards_balance(t: Tenant, holder: str, token_id: int) -> int:
    return int(t.chain.contract("RewardsToken", t.rewards).functions.balanceOf(holder, token_id).call())


def test_roles_are_granted_at_initialisation_and_guarded(tenant: Tenant) -> None:
    token = tenant.chain.contract("CreditToken", tenant.credit)
    minter_role, pauser_role = token.functions.MINTER_ROLE().call(), token.functions.PAUSER_ROLE().call()
    assert token.functions.hasRole(b"\0" * 32, tenant.admin.address).call()
    assert token.functions.hasRole(pauser_role, tenant.admin.address).call()
    assert token.functions.hasRole(minter_role, tenant.minter.address).call()
    outsider = tenant.holders[0]
    assert not token.functions.hasRole(minter_role, outsider.address).call()
    with pytest.raises(Reverted):
        token.functions.grantRole(minter_role, outsider.address).transact({"from": outsider.address})
    with pytest.raises(Reverted):
        token.functions.pause().transact({"from": outsider.address})

    # Minting follows the role: granted, the outsider's signature mints; revoked, it no longer does.
    assert run(tenant, CREDIT, [signed(outsider, domain(tenant, CREDIT), [mint(outsider.address, 5)])]) == [
        Failure.UNAUTHORIZED
    ]
    tenant.chain.w3.eth.wait_for_transaction_receipt(
        token.functions.grantRole(minter_role, outsider.address).transact({"from": tenant.admin.address})
    )
    assert run(tenant, CREDIT, [signed(outsider, domain(tenant, CREDIT), [mint(outsider.address, 5)])]) == [
        Failure.NONE
    ]
    tenant.chain.w3.eth.wait_for_transaction_receipt(
        token.functions.revokeRole(minter_role, outsider.address).transact({"from": tenant.admin.address})
    )
    assert run(tenant, CREDIT, [signed(outsider, domain(tenant, CREDIT), [mint(outsider.address, 5)])]) == [
        Failure.UNAUTHORIZED
    ]
    assert credit_balance(tenant, outsider.address) == 5


def test_signed_mint_credits_the_holder_and_emits_the_ref(tenant: Tenant) -> None:
    holder = tenant.holders[0].address
    op = mint(holder, 250)
    (receipt,) = operations.submit(
        tenant.chain, CREDIT, tenant.credit, [signed(tenant.minter, domain(tenant, CREDIT), [op])]
    ).receipts
    token = operations.token(tenant.chain, CREDIT, tenant.credit)
    (outcome,) = operations.outcomes(token, receipt)
    assert (outcome.ref, outcome.signer, outcome.failure) == (op.ref, tenant.minter.address, Failure.NONE)
    (transfer,) = token.events.Transfer().process_receipt(receipt, errors=DISCARD)
    assert transfer["args"]["to"] == holder and transfer["args"]["value"] == 250
    assert credit_balance(tenant, holder) == 250
    assert token.functions.totalSupply().call() == 250
    assert token.functions.refUsed(tenant.minter.address, op.ref).call()


def test_the_same_ref_executes_once(tenant: Tenant) -> None:
    holder = tenant.holders[0].address
    op = mint(holder, 40)
    first = signed(tenant.minter, domain(tenant, CREDIT), [op])
    assert run(tenant, CREDIT, [first]) == [Failure.NONE]
    # The very same signed group (a replay) and a freshly signed operation reusing the ref.
    again = signed(tenant.minter, domain(tenant, CREDIT), [Operation(ZERO_ADDRESS, holder, 99, op.ref)])
    assert run(tenant, CREDIT, [first, again]) == [Failure.REF_USED, Failure.REF_USED]
    assert credit_balance(tenant, holder) == 40


def test_holder_signed_transfer_and_burn(tenant: Tenant) -> None:
    alice, bob = tenant.holders[0], tenant.holders[1]
    dom = domain(tenant, CREDIT)
    assert run(tenant, CREDIT, [signed(tenant.minter, dom, [mint(alice.address, 100)])]) == [Failure.NONE]
    transfer = Operation(alice.address, bob.address, 30, ref())
    burn = Operation(alice.address, ZERO_ADDRESS, 20, ref())
    assert run(tenant, CREDIT, [signed(alice, dom, [transfer, burn])]) == [Failure.NONE, Failure.NONE]
    assert (credit_balance(tenant, alice.address), credit_balance(tenant, bob.address)) == (50, 30)
    assert tenant.chain.contract("CreditToken", tenant.credit).functions.totalSupply().call() == 80
    # Nobody but the holder can move the holder's tokens: not the minter, not the recipient.
    stolen = Operation(alice.address, bob.address, 50, ref())
    assert run(tenant, CREDIT, [signed(tenant.minter, dom, [stolen]), signed(bob, dom, [stolen])]) == [
        Failure.UNAUTHORIZED,
        Failure.UNAUTHORIZED,
    ]
    overdraft = Operation(alice.address, bob.address, 51, ref())
    assert run(tenant, CREDIT, [signed(alice, dom, [overdraft])]) == [Failure.INSUFFICIENT_BALANCE]
    assert credit_balance(tenant, alice.address) == 50


def test_forged_expired_and_misdirected_signatures_are_refused(tenant: Tenant) -> None:
    holder = tenant.holders[0].address
    dom = domain(tenant, CREDIT)
    stranger = Account.from_key(Web3.keccak(text="stranger"))
    op = mint(holder, 10)
    good = signed(tenant.minter, dom, [op])
    cases = {
        "wrong signer": signed(stranger, dom, [op]),
        "signature of another key": SignedGroup(
            tenant.minter.address, [op], good.deadline, signed(stranger, dom, [op], good.deadline).signature
        ),
        "expired": signed(tenant.minter, dom, [op], deadline=int(time.time()) - 3600),
        "wrong chain id": signed(
            tenant.minter, Domain(CREDIT, dom.chain_id + 1, tenant.credit, dom.name), [op]
        ),
        "wrong contract": signed(
            tenant.minter, Domain(CREDIT, dom.chain_id, tenant.capped_credit, dom.name), [op]
        ),
        "wrong domain name": signed(
            tenant.minter, Domain(CREDIT, dom.chain_id, tenant.credit, "PERS Credit"), [op]
        ),
        "tampered amount": SignedGroup(
            good.signer, [Operation(ZERO_ADDRESS, holder, 11, op.ref)], good.deadline, good.signature
        ),
        "malformed signature": SignedGroup(good.signer, [op], good.deadline, good.signature[:64]),
    }
    results = dict(zip(cases, run(tenant, CREDIT, list(cases.values())), strict=True))
    assert results == {name: Failure.UNAUTHORIZED for name in cases} | {"expired": Failure.EXPIRED}
    assert credit_balance(tenant, holder) == 0
    # None of the refused attempts consumed the ref: the genuine operation still executes once.
    assert run(tenant, CREDIT, [good, good]) == [Failure.NONE, Failure.REF_USED]
    assert credit_balance(tenant, holder) == 10


def test_a_bad_operation_does_not_take_the_batch_down(tenant: Tenant) -> None:
    holders = [h.address for h in tenant.holders]
    dom = domain(tenant, CREDIT)
    ops = [
        mint(holders[0], 1),
        Operation(ZERO_ADDRESS, ZERO_ADDRESS, 5, ref()),
        mint(holders[1], 0),
        mint(holders[2], 3),
    ]
    assert run(tenant, CREDIT, [signed(tenant.minter, dom, ops)]) == [
        Failure.NONE,
        Failure.INVALID,
        Failure.INVALID,
        Failure.NONE,
    ]
    assert [credit_balance(tenant, h) for h in holders] == [1, 0, 3]


def test_supply_cap(tenant: Tenant) -> None:
    holder = tenant.holders[0].address
    dom = domain(tenant, CREDIT, tenant.capped_credit)
    token = tenant.chain.contract("CreditToken", tenant.capped_credit)
    assert (token.functions.maxSupply().call(), token.functions.decimals().call()) == (1000, 2)
    ops = [mint(holder, 600), mint(holder, 401), mint(holder, 400), mint(holder, 2**256 - 1)]
    assert run(tenant, CREDIT, [signed(tenant.minter, dom, ops)], tenant.capped_credit) == [
        Failure.NONE,
        Failure.CAP_EXCEEDED,
        Failure.NONE,
        Failure.CAP_EXCEEDED,
    ]
    assert credit_balance(tenant, holder, tenant.capped_credit) == 1000


def test_pause_stops_every_movement_until_unpaused(tenant: Tenant) -> None:
    alice, bob = tenant.holders[0], tenant.holders[1]
    token = tenant.chain.contract("CreditToken", tenant.credit)
    dom = domain(tenant, CREDIT)
    assert run(tenant, CREDIT, [signed(tenant.minter, dom, [mint(alice.address, 10)])]) == [Failure.NONE]
    tenant.chain.w3.eth.wait_for_transaction_receipt(
        token.functions.pause().transact({"from": tenant.admin.address})
    )
    assert token.functions.paused().call()
    with pytest.raises(ChainError):
        run(tenant, CREDIT, [signed(tenant.minter, dom, [mint(alice.address, 10)])])
    with pytest.raises(Reverted):
        token.functions.transfer(bob.address, 1).transact({"from": alice.address})
    tenant.chain.w3.eth.wait_for_transaction_receipt(
        token.functions.unpause().transact({"from": tenant.admin.address})
    )
    assert run(tenant, CREDIT, [signed(tenant.minter, dom, [mint(alice.address, 10)])]) == [Failure.NONE]
    assert credit_balance(tenant, alice.address) == 20


def test_clones_and_implementations_cannot_be_initialised_again(tenant: Tenant) -> None:
    thief = tenant.holders[0].address
    factory = tenant.chain.contract("TokenFactory", tenant.factory)
    for name, address, args in (
        ("CreditToken", tenant.credit, ["X", "X", 0, 0, thief, [thief]]),
        ("CreditToken", factory.functions.creditImplementation().call(), ["X", "X", 0, 0, thief, [thief]]),
        ("RewardsToken", tenant.rewards, ["x", thief, [thief]]),
        ("RewardsToken", factory.functions.rewardsImplementation().call(), ["x", thief, [thief]]),
    ):
        with pytest.raises(Reverted):
            tenant.chain.contract(name, address).functions.initialize(*args).transact({"from": thief})
    assert tenant.chain.contract("CreditToken", tenant.credit).functions.name().call() == "Acme Points"


def test_typed_data_signed_by_eth_account_verifies_on_chain(tenant: Tenant) -> None:
    holder = tenant.holders[0].address
    for standard, op in ((CREDIT, mint(holder, 7)), (REWARDS, mint(holder, 7, REWARD_ID))):
        dom, deadline = domain(tenant, standard), later()
        document = typed_data.typed_data(dom, tenant.minter.address, [op], deadline)
        signature = Account.sign_typed_data(tenant.minter.key, full_message=document).signature
        assert signature == typed_data.sign(
            typed_data.digest(dom, tenant.minter.address, [op], deadline), tenant.minter.key
        )
        group = SignedGroup(tenant.minter.address, [op], deadline, bytes(signature))
        assert run(tenant, standard, [group]) == [Failure.NONE]
    assert credit_balance(tenant, holder) == 7
    assert rewards_balance(tenant, holder, REWARD_ID) == 7


def test_contract_hashes_match_the_chain_layer(tenant: Tenant) -> None:
    op, deadline = mint(tenant.holders[0].address, 3, REWARD_ID), later()
    for standard in (CREDIT, REWARDS):
        contract = operations.token(
            tenant.chain, standard, tenant.credit if standard is CREDIT else tenant.rewards
        )
        signer = tenant.minter.address
        args = [signer, [tuple(op.values(standard).values())], deadline]
        assert contract.functions.hashOperations(*args).call() == typed_data.struct_hash(
            standard, signer, [op], deadline
        )
        assert contract.functions.DOMAIN_SEPARATOR().call() == typed_data.domain_separator(
            domain(tenant, standard, contract.address)
        )


def test_eip2612_permit_on_a_clone(tenant: Tenant) -> None:
    owner, spender = tenant.holders[0], tenant.holders[1]
    token = tenant.chain.contract("CreditToken", tenant.credit)
    deadline = later()
    permit = {
        "types": {
            "EIP712Domain": [
                {"name": n, "type": t}
                for n, t in (
                    ("name", "string"),
                    ("version", "string"),
                    ("chainId", "uint256"),
                    ("verifyingContract", "address"),
                )
            ],
            "Permit": [
                {"name": n, "type": t}
                for n, t in (
                    ("owner", "address"),
                    ("spender", "address"),
                    ("value", "uint256"),
                    ("nonce", "uint256"),
                    ("deadline", "uint256"),
                )
            ],
        },
        "primaryType": "Permit",
        # Built as most EIP-2612 integrations do: the domain name is the token's name().
        "domain": {
            "name": token.functions.name().call(),
            "version": "1",
            "chainId": tenant.chain.chain_id,
            "verifyingContract": tenant.credit,
        },
        "message": {
            "owner": owner.address,
            "spender": spender.address,
            "value": 77,
            "nonce": 0,
            "deadline": deadline,
        },
    }
    sig = Account.sign_typed_data(owner.key, full_message=permit)
    tx = token.functions.permit(
        owner.address,
        spender.address,
        77,
        deadline,
        sig.v,
        sig.r.to_bytes(32, "big"),
        sig.s.to_bytes(32, "big"),
    ).transact({"from": spender.address})
    tenant.chain.w3.eth.wait_for_transaction_receipt(tx)
    assert token.functions.allowance(owner.address, spender.address).call() == 77
    assert token.functions.nonces(owner.address).call() == 1
    # ERC-5267 reports that domain; signed operations share it.
    fields, name, version, chain_id, contract, _, _ = token.functions.eip712Domain().call()
    assert (fields, name, version, chain_id, contract) == (
        b"\x0f",
        "Acme Points",
        "1",
        tenant.chain.chain_id,
        tenant.credit,
    )


def test_status_ids_are_locked_for_holders(tenant: Tenant) -> None:
    alice, bob = tenant.holders[0], tenant.holders[1]
    dom = domain(tenant, REWARDS)
    token = tenant.chain.contract("RewardsToken", tenant.rewards)
    assert token.functions.locked(STATUS_ID).call() and not token.functions.locked(REWARD_ID).call()
    grants = [mint(alice.address, 2, STATUS_ID), mint(alice.address, 5, REWARD_ID)]
    assert run(tenant, REWARDS, [signed(tenant.minter, dom, grants)]) == [Failure.NONE, Failure.NONE]
    with pytest.raises(Reverted):
        token.functions.safeTransferFrom(alice.address, bob.address, STATUS_ID, 1, b"").transact(
            {"from": alice.address}
        )
    moves = [
        Operation(alice.address, bob.address, 1, ref(), STATUS_ID),
        Operation(alice.address, ZERO_ADDRESS, 1, ref(), STATUS_ID),
        Operation(alice.address, bob.address, 2, ref(), REWARD_ID),
    ]
    assert run(tenant, REWARDS, [signed(alice, dom, moves)]) == [
        Failure.LOCKED,
        Failure.UNAUTHORIZED,
        Failure.NONE,
    ]
    # Rewards move freely, also directly; the tenant (a minter) revokes a status.
    tenant.chain.w3.eth.wait_for_transaction_receipt(
        token.functions.safeTransferFrom(alice.address, bob.address, REWARD_ID, 1, b"").transact(
            {"from": alice.address}
        )
    )
    revoke = Operation(alice.address, ZERO_ADDRESS, 1, ref(), STATUS_ID)
    assert run(tenant, REWARDS, [signed(tenant.minter, dom, [revoke])]) == [Failure.NONE]
    assert [rewards_balance(tenant, a.address, i) for a in (alice, bob) for i in (STATUS_ID, REWARD_ID)] == [
        1,
        2,
        0,
        3,
    ]


def test_rewards_batch_refuses_unknown_ids_and_rejecting_receivers(tenant: Tenant) -> None:
    alice = tenant.holders[0].address
    ops = [
        mint(alice, 1, REWARD_ID),
        mint(alice, 1, 999),  # never registered
        mint(tenant.factory, 1, REWARD_ID),  # a contract that does not accept ERC-1155 tokens
        mint(alice, 4, STATUS_ID),
    ]
    assert run(tenant, REWARDS, [signed(tenant.minter, domain(tenant, REWARDS), ops)]) == [
        Failure.NONE,
        Failure.UNKNOWN_ID,
        Failure.REJECTED,
        Failure.NONE,
    ]
    assert (rewards_balance(tenant, alice, REWARD_ID), rewards_balance(tenant, alice, STATUS_ID)) == (1, 4)
    assert rewards_balance(tenant, tenant.factory, REWARD_ID) == 0


def test_ids_register_once_by_the_admin_only(tenant: Tenant) -> None:
    token = tenant.chain.contract("RewardsToken", tenant.rewards)
    with pytest.raises(Reverted):
        token.functions.registerId(7, 1).transact({"from": tenant.holders[0].address})
    with pytest.raises(Reverted):
        token.functions.registerId(STATUS_ID, 1).transact({"from": tenant.admin.address})
    with pytest.raises(Reverted):
        token.functions.registerId(7, 0).transact({"from": tenant.admin.address})
    assert token.functions.kindOf(STATUS_ID).call() == 2


def test_batches_over_the_gas_cap_are_split_and_a_group_over_it_is_refused(tenant: Tenant) -> None:
    chain = tenant.chain
    dom = domain(tenant, CREDIT)
    holders = [h.address for h in tenant.holders]
    # Holders already hold the token, so every later group costs about the same.
    assert (
        run(tenant, CREDIT, [signed(tenant.minter, dom, [mint(h, 1) for h in holders])]) == [Failure.NONE] * 3
    )
    one = operations.submit(
        chain, CREDIT, tenant.credit, [signed(tenant.minter, dom, [mint(holders[0], 1)])]
    ).receipts
    groups = [signed(tenant.minter, dom, [mint(h, 1)]) for h in holders * 2]
    original = chain.network
    chain.network = original.model_copy(update={"tx_gas_cap": int(one[0]["gasUsed"] * 1.5)})
    try:
        receipts = operations.submit(chain, CREDIT, tenant.credit, groups).receipts
        assert len(receipts) > 1
        assert all(r["gasUsed"] <= chain.network.tx_gas_cap for r in receipts)
        nonce = chain.w3.eth.get_transaction_count(chain.relayer.address)
        big = signed(tenant.minter, dom, [mint(h, 1) for h in holders * 4])
        with pytest.raises(GasCapExceeded):
            operations.submit(chain, CREDIT, tenant.credit, [big])
        assert chain.w3.eth.get_transaction_count(chain.relayer.address) == nonce  # nothing was sent
    finally:
        chain.network = original
    assert [credit_balance(tenant, h) for h in holders] == [4, 3, 3]


def test_nobody_else_can_take_the_platforms_clone_addresses(tenant: Tenant) -> None:
    factory = tenant.chain.contract("TokenFactory", tenant.factory)
    key, relayer = Web3.keccak(text="victim:test"), tenant.chain.relayer.address
    attacker = tenant.holders[0]
    predicted = factory.functions.rewardsAddress(relayer, key).call()
    # The attacker deploys "the victim's" contracts first, as admin and minter of its own.
    for call in (
        factory.functions.createRewards(key, "", attacker.address, [attacker.address]),
        factory.functions.createCredit(key, b"\0" * 32, "X", "X", 0, 0, attacker.address, [attacker.address]),
    ):
        tenant.chain.w3.eth.wait_for_transaction_receipt(call.transact({"from": attacker.address}))
    assert not tenant.chain.has_code(predicted)
    assert not tenant.chain.has_code(factory.functions.creditAddress(relayer, key, b"\0" * 32).call())
    # The platform's own deployment still lands where it predicted, and emits itself as the creator.
    receipt = tenant.chain.call(factory, "createRewards", key, "", tenant.admin.address, [])
    (event,) = factory.events.TenantContractCreated().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["contractAddress"] == predicted and event["args"]["creator"] == relayer
