"""Hand decoding of the fixed event layouts (topics and data words read as hex slices; web3's generic
ABI decoder is ~40x slower), into event rows and balance changes. Unknown logs are kept raw.

A relayed movement is followed by its operation's outcome as the token's next outcome log in the same
transaction (docs/adr/0001): the first transfer of a contract since its previous outcome log takes the
`signer` and `ref` of an `OperationExecuted`. A transfer left without them was made by a wallet."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

ZERO = "0x" + "00" * 20


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


TRANSFER = topic("Transfer(address,address,uint256)")
APPROVAL = topic("Approval(address,address,uint256)")
TRANSFER_SINGLE = topic("TransferSingle(address,address,address,uint256,uint256)")
TRANSFER_BATCH = topic("TransferBatch(address,address,address,uint256[],uint256[])")
APPROVAL_FOR_ALL = topic("ApprovalForAll(address,address,bool)")
URI = topic("URI(string,uint256)")
EXECUTED = topic("OperationExecuted(bytes32,address)")
FAILED = topic("OperationFailed(bytes32,address,uint8)")
REFS_CANCELLED = topic("RefsCancelled(address,uint256,uint256)")
ROLE_GRANTED = topic("RoleGranted(bytes32,address,address)")
ROLE_REVOKED = topic("RoleRevoked(bytes32,address,address)")
ROLE_ADMIN_CHANGED = topic("RoleAdminChanged(bytes32,bytes32,bytes32)")
PAUSED = topic("Paused(address)")
UNPAUSED = topic("Unpaused(address)")
ID_REGISTERED = topic("IdRegistered(uint256,uint8)")
SOULBOUND = topic("Soulbound(uint256,bool)")
CONTRACT_CREATED = topic("TenantContractCreated(bytes32,uint8,address,address)")
CONTRACT_KINDS = {0: "credit", 1: "rewards"}

# Column order of `mirror_events` and `mirror_balance_changes` rows, as the store writes them.
EVENT_COLUMNS = (
    "chain_id",
    "block_hash",
    "log_index",
    "block_number",
    "tx_hash",
    "contract",
    "name",
    "operator",
    "from_address",
    "to_address",
    "token_id",
    "amount",
    "signer",
    "ref",
    "data",
)
CHANGE_COLUMNS = (
    "chain_id",
    "block_hash",
    "log_index",
    "position",
    "block_number",
    "contract",
    "token_id",
    "holder",
    "delta",
)
SIGNER, REF = EVENT_COLUMNS.index("signer"), EVENT_COLUMNS.index("ref")


def _address(word: str) -> str:
    """The address in a 32-byte topic or data word (64 hex digits, or 66 with 0x)."""
    return "0x" + word[-40:]


def _words(data: str) -> list[str]:
    body = data[2:]
    return [body[i : i + 64] for i in range(0, len(body), 64)]


def _array(words: list[str], offset_word: str) -> list[int]:
    start = int(offset_word, 16) // 32
    length = int(words[start], 16)
    return [int(w, 16) for w in words[start + 1 : start + 1 + length]]


def _string(words: list[str], offset_word: str) -> str:
    start = int(offset_word, 16) // 32
    length = int(words[start], 16)
    return bytes.fromhex("".join(words[start + 1 :])[: 2 * length]).decode("utf-8", "replace")


@dataclass(frozen=True)
class Created:
    """A `TenantContractCreated` log of the factory."""

    tenant_key: str
    kind: str
    address: str
    creator: str
    block_number: int


def created(log: dict[str, Any]) -> Created | None:
    topics = log["topics"]
    if len(topics) != 3 or topics[0] != CONTRACT_CREATED:
        return None
    words = _words(log["data"])
    return Created(
        topics[1],
        CONTRACT_KINDS.get(int(topics[2], 16), "unknown"),
        _address(words[0]),
        _address(words[1]),
        int(log["blockNumber"], 16),
    )


@dataclass
class Decoded:
    """A chunk's rows: events, balance changes (holders other than the zero address)."""

    events: list[list[Any]] = field(default_factory=list)
    changes: list[tuple[Any, ...]] = field(default_factory=list)


def decode(chain_id: int, logs: Iterable[dict[str, Any]]) -> Decoded:
    """Rows for `logs`, which are in chain order (block, log index)."""
    out = Decoded()
    unclaimed: dict[
        tuple[str, str], list[Any] | None
    ] = {}  # (tx, contract) → first transfer since an outcome
    events, changes = out.events, out.changes
    for log in logs:
        topics = log["topics"]
        contract = log["address"].lower()
        tx_hash = log["transactionHash"]
        block_hash = log["blockHash"]
        block = int(log["blockNumber"], 16)
        index = int(log["logIndex"], 16)
        row: list[Any] = [chain_id, block_hash, index, block, tx_hash, contract, "unknown"] + [None] * 8
        first = topics[0] if topics else ""
        moved: list[tuple[str, str, int, int]] = []  # (from, to, token id, amount)
        n = len(topics)
        if first == TRANSFER and n == 3:
            source, target, amount = _address(topics[1]), _address(topics[2]), int(log["data"], 16)
            row[6:12] = ["Transfer", None, source, target, 0, amount]
            moved.append((source, target, 0, amount))
        elif first == TRANSFER_SINGLE and n == 4:
            words = _words(log["data"])
            source, target = _address(topics[2]), _address(topics[3])
            token_id, amount = int(words[0], 16), int(words[1], 16)
            row[6:12] = ["TransferSingle", _address(topics[1]), source, target, token_id, amount]
            moved.append((source, target, token_id, amount))
        elif first == TRANSFER_BATCH and n == 4:
            words = _words(log["data"])
            source, target = _address(topics[2]), _address(topics[3])
            ids, amounts = _array(words, words[0]), _array(words, words[1])
            row[6:10] = ["TransferBatch", _address(topics[1]), source, target]
            row[14] = {"ids": [str(i) for i in ids], "amounts": [str(a) for a in amounts]}
            moved.extend(
                (source, target, token_id, amount) for token_id, amount in zip(ids, amounts, strict=True)
            )
        elif first in (EXECUTED, FAILED) and n == 3:
            signer, ref = _address(topics[2]), topics[1]
            row[6], row[SIGNER], row[REF] = (
                ("OperationExecuted" if first == EXECUTED else "OperationFailed"),
                signer,
                ref,
            )
            if first == FAILED:
                row[14] = {"reason": int(log["data"], 16)}
            transfer = unclaimed.get((tx_hash, contract))
            if transfer is not None and first == EXECUTED:
                transfer[SIGNER], transfer[REF] = signer, ref
            unclaimed[(tx_hash, contract)] = None
        else:
            row[6], row[14] = _other(log, first, n)
        if moved:
            key = (tx_hash, contract)
            if unclaimed.get(key) is None:
                unclaimed[key] = row
            for item, (source, target, token_id, amount) in enumerate(moved):
                if source != ZERO:
                    changes.append(
                        (chain_id, block_hash, index, 2 * item, block, contract, token_id, source, -amount)
                    )
                if target != ZERO:
                    changes.append(
                        (chain_id, block_hash, index, 2 * item + 1, block, contract, token_id, target, amount)
                    )
        events.append(row)
    return out


def _other(log: dict[str, Any], first: str, n: int) -> tuple[str, dict[str, Any]]:
    """The name and decoded fields of the other known layouts; `unknown` with the raw log otherwise."""
    topics, data = log["topics"], log["data"]
    if first == APPROVAL and n == 3:
        return "Approval", {
            "owner": _address(topics[1]),
            "spender": _address(topics[2]),
            "value": str(int(data, 16)),
        }
    if first == APPROVAL_FOR_ALL and n == 3:
        return "ApprovalForAll", {
            "account": _address(topics[1]),
            "operator": _address(topics[2]),
            "approved": int(data, 16) != 0,
        }
    if first == URI and n == 2:
        words = _words(data)
        return "URI", {"id": str(int(topics[1], 16)), "value": _string(words, words[0])}
    if first in (ROLE_GRANTED, ROLE_REVOKED) and n == 4:
        name = "RoleGranted" if first == ROLE_GRANTED else "RoleRevoked"
        return name, {"role": topics[1], "account": _address(topics[2]), "sender": _address(topics[3])}
    if first == ROLE_ADMIN_CHANGED and n == 4:
        return "RoleAdminChanged", {
            "role": topics[1],
            "previousAdminRole": topics[2],
            "newAdminRole": topics[3],
        }
    if first in (PAUSED, UNPAUSED) and n == 1:
        return ("Paused" if first == PAUSED else "Unpaused"), {"account": _address(data)}
    if first == REFS_CANCELLED and n == 3:
        return "RefsCancelled", {
            "signer": _address(topics[1]),
            "word": str(int(topics[2], 16)),
            "mask": str(int(data, 16)),
        }
    if first == ID_REGISTERED and n == 2:
        return "IdRegistered", {"id": str(int(topics[1], 16)), "kind": int(data, 16)}
    if first == SOULBOUND and n == 2:
        return "Soulbound", {"id": str(int(topics[1], 16)), "bounded": int(data, 16) != 0}
    if first == CONTRACT_CREATED and n == 3:
        found = created(log)
        assert found is not None
        return "TenantContractCreated", {
            "tenantKey": found.tenant_key,
            "kind": found.kind,
            "contractAddress": found.address,
            "creator": found.creator,
        }
    return "unknown", {"topics": list(topics), "data": data}
