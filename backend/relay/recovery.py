"""Recovery of a transaction the chain went past: the lane's nonce on chain is beyond its nonce and no
hash sent with that nonce has a receipt. Someone else used the nonce (the lane's key is shared), or
the node lost the transaction and its receipt; either way these bytes can never be mined, and
re-sending them only earns "nonce too low".

Each of its operations whose ref the token consumed takes its outcome from the token's own log for
its (signer, ref); the others never ran and are queued again with the same ref (the contract consumes
a ref once, so whatever runs later is still the only run). The lane's nonce is resynced to the chain."""

from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3
from web3.contract import Contract

from backend.chain.client import Chain
from backend.chain.operations import NOT_FINAL, Outcome, outcomes
from backend.kit.db import utcnow
from backend.relay.models import Lane, Operation, RelayerTransaction


def recover(
    session: Session,
    chain: Chain,
    contract: Contract | None,
    record: RelayerTransaction,
    overdue_after: float,
) -> list[tuple[Operation, Outcome]] | None:
    """For a locked pending `record` that has waited `overdue_after` seconds without a receipt: None
    while the chain has not gone past its nonce (it may still be mined: re-send it), else marks it and
    the transactions that shared its nonce `dropped`, queues again the operations that never ran and
    returns those that did, with their outcome (`contract` is the token they went to; None for a
    platform transaction, which carries no operation)."""
    if record.broadcast_at is None or (utcnow() - record.broadcast_at).total_seconds() < overdue_after:
        return None
    lane = session.get(Lane, record.lane_id, with_for_update=True)
    assert lane is not None
    on_chain = chain.w3.eth.get_transaction_count(Web3.to_checksum_address(lane.address), "latest")
    if on_chain <= record.nonce:
        return None
    carriers = list(
        session.scalars(
            select(RelayerTransaction).where(
                RelayerTransaction.lane_id == record.lane_id,
                RelayerTransaction.nonce == record.nonce,
                RelayerTransaction.status == "pending",
            )
        )
    )
    if any(chain.rpc("eth_getTransactionReceipt", c.tx_hash) is not None for c in carriers):
        return None  # mined after all: settling records it
    now = utcnow()
    for carrier in carriers:
        carrier.status, carrier.finished_at = "dropped", now
    lane.next_nonce = max(lane.next_nonce, on_chain)
    ops = session.scalars(
        select(Operation).where(
            Operation.relayer_tx_id.in_([c.id for c in carriers]), Operation.status == "submitted"
        )
    )
    ran = []
    for op in ops:
        outcome = None
        if (
            contract is not None
            and contract.functions.refUsed(Web3.to_checksum_address(op.signer), op.ref).call()
        ):
            outcome = consumed(chain, contract, op.signer, op.ref)
        if outcome is not None:
            ran.append((op, outcome))
        else:
            op.status, op.relayer_tx_id, op.tx_hash, op.submitted_at = "queued", None, None, None
    return ran


def consumed(chain: Chain, contract: Contract, signer: str, ref: str) -> Outcome | None:
    """The final outcome of an operation's (signer, ref) in whichever transaction consumed it, from
    the token's own logs (a re-sent or replaced transaction of ours, or one the node lost)."""
    topics = [
        "0x" + Web3.keccak(text=signature).hex().removeprefix("0x")
        for signature in ("OperationExecuted(bytes32,address)", "OperationFailed(bytes32,address,uint8)")
    ]
    signer_topic = "0x" + "00" * 12 + signer[2:].lower()
    logs = chain.w3.eth.get_logs(
        {
            "address": contract.address,
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [topics, ref, signer_topic],
        }
    )
    for log_entry in logs:
        receipt = chain.w3.eth.get_transaction_receipt(log_entry["transactionHash"])
        for outcome in outcomes(contract, receipt):
            if outcome.ref.hex() == ref[2:] and outcome.failure not in NOT_FINAL:
                return outcome
    return None
