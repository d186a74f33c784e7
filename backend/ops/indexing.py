"""How far the chain mirror of a network is behind its node, for `/readyz` and `/metrics`: in blocks
(the node's head less the mirror's cursor) and in seconds (how long ago the node made the first block
the mirror does not hold yet; 0 when it holds the head)."""

import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from backend.runtime import Runtime
from indexer import reads


@dataclass(frozen=True)
class Lag:
    network: str
    block: int  # the mirror's cursor; -1 before the first block is written
    head: int | None  # None: the node did not answer (the chain check says so)
    blocks: int | None
    seconds: float | None


def networks(runtime: Runtime) -> list[str]:
    """The networks of the test and live environments."""
    found = (runtime.settings.network_for(env) for env in ("test", "live"))
    return sorted({n for n in found if n is not None})


def lag(runtime: Runtime, session: Session, network: str) -> Lag | None:
    """None when no indexer has written the network's mirror yet."""
    cursor = reads.cursor(session, network)
    if cursor is None:
        return None
    try:
        eth = runtime.chain(network).w3.eth
        head = eth.block_number
        behind = max(0, head - cursor.block_number)
        seconds = 0.0
        if behind:
            first_missing = eth.get_block(cursor.block_number + 1)
            seconds = max(0.0, time.time() - first_missing["timestamp"])
    except Exception:  # any failure of the node: the lag is unknown, the chain's own check names it
        return Lag(network, cursor.block_number, None, None, None)
    return Lag(network, cursor.block_number, head, behind, round(seconds, 3))
