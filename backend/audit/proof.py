"""An operation's proof, fetched live from the node: its transaction's receipt, the outcome log that
carries its ref and signer, and the movement that log settles, each checked against the record and
against the mirror. Decoded with web3's ABI decoder, independently of the indexer's own decoding."""

from typing import Any

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound

from backend.audit.schemas import Check, LogOut, ProofOut
from backend.chain.client import Chain
from backend.kit.errors import ChainUnavailable, PersError
from backend.relay.models import Operation
from indexer import reads

EXECUTED = Web3.keccak(text="OperationExecuted(bytes32,address)")
FAILED = Web3.keccak(text="OperationFailed(bytes32,address,uint8)")
TRANSFER = Web3.keccak(text="Transfer(address,address,uint256)")
TRANSFER_SINGLE = Web3.keccak(text="TransferSingle(address,address,address,uint256,uint256)")


class NotOnChain(PersError):
    code = "not_on_chain"
    status = 409


def prove(chain: Chain, op: Operation, mirrored: reads.Outcome | None) -> ProofOut:
    """`mirrored`: the mirror's outcome event of the operation (None if the mirror holds none)."""
    if op.tx_hash is None:
        raise NotOnChain(f"the operation is {op.status}: it has no transaction yet")
    try:
        receipt = chain.w3.eth.get_transaction_receipt(HexBytes(op.tx_hash))
    except TransactionNotFound:
        receipt = None
    except OSError as exc:
        raise ChainUnavailable(f"the node did not answer: {exc}") from exc
    checks: list[Check] = []

    def check(name: str, expected: Any, actual: Any) -> None:
        shown = (None if expected is None else str(expected), None if actual is None else str(actual))
        checks.append(Check(name=name, ok=shown[0] == shown[1], expected=shown[0], actual=shown[1]))

    if receipt is None:
        check("receipt", op.tx_hash, None)
        return ProofOut(
            transaction_id=op.id,
            tx_hash=op.tx_hash,
            block_number=None,
            block_hash=None,
            receipt_status=None,
            outcome_log=None,
            transfer_log=None,
            checks=checks,
            verified=False,
        )
    logs = [log for log in receipt["logs"] if log["address"].lower() == op.contract_address.lower()]
    outcome, transfer = _find(logs, op)
    check("receipt status", 1, receipt["status"])
    check("block number", op.block_number, receipt["blockNumber"])
    expected_outcome = "OperationFailed" if op.status == "failed" else "OperationExecuted"
    check("outcome event", expected_outcome, _outcome_name(outcome))
    if op.status != "failed":
        moved = None if transfer is None else _movement(transfer)
        check("from", op.from_address.lower(), moved and moved[0])
        check("to", op.to_address.lower(), moved and moved[1])
        check("token id", op.chain_token_id, moved and moved[2])
        check("amount", op.amount, moved and moved[3])
    if outcome is not None:
        at = None if mirrored is None else (mirrored.tx_hash, mirrored.log_index, mirrored.block_number)
        check("mirror", (op.tx_hash.lower(), outcome["logIndex"], receipt["blockNumber"]), at)
    return ProofOut(
        transaction_id=op.id,
        tx_hash=op.tx_hash,
        block_number=receipt["blockNumber"],
        block_hash=_hex(receipt["blockHash"]),
        receipt_status=receipt["status"],
        outcome_log=None if outcome is None else _log(outcome),
        transfer_log=None if transfer is None else _log(transfer),
        checks=checks,
        verified=all(c.ok for c in checks),
    )


def _find(logs: list[Any], op: Operation) -> tuple[Any | None, Any | None]:
    """The outcome log with the operation's ref and signer, and the movement just before it: the last
    transfer log of the contract since its previous outcome log (docs/adr/0001)."""
    ref, signer = HexBytes(op.ref), HexBytes(op.signer)
    transfer = None
    for log in logs:
        topics = log["topics"]
        if topics and topics[0] in (EXECUTED, FAILED):
            if len(topics) == 3 and topics[1] == ref and HexBytes(topics[2][-20:]) == signer:
                return log, transfer if topics[0] == EXECUTED else None
            transfer = None
        elif topics and topics[0] in (TRANSFER, TRANSFER_SINGLE):
            transfer = log
    return None, None


def _outcome_name(log: Any | None) -> str | None:
    if log is None:
        return None
    return "OperationExecuted" if log["topics"][0] == EXECUTED else "OperationFailed"


def _movement(log: Any) -> tuple[str, str, int, int]:
    """(from, to, token id, amount) of an ERC-20 Transfer or ERC-1155 TransferSingle."""
    topics, data = log["topics"], bytes(log["data"])
    if topics[0] == TRANSFER:
        return _address(topics[1]), _address(topics[2]), 0, int.from_bytes(data[:32])
    return _address(topics[2]), _address(topics[3]), int.from_bytes(data[:32]), int.from_bytes(data[32:64])


def _address(topic: bytes) -> str:
    return "0x" + bytes(topic)[-20:].hex()


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _log(log: Any) -> LogOut:
    return LogOut(
        address=log["address"],
        log_index=log["logIndex"],
        topics=[_hex(t) for t in log["topics"]],
        data=_hex(log["data"]),
    )
