"""The indexer's word on relayed operations (its hook after each write): a `mined` operation whose
outcome event the mirror holds at the confirmation depth becomes `confirmed`; one whose outcome
event is no longer in the mirror although the mirror has passed its block left the chain in a reorg,
and goes back to `submitted` with its transaction pending, for the relay to look for a receipt and
send the same bytes again. Operations are joined to the mirror by (contract, signer, ref). The credit
mints it confirms count towards their recipients' lifetime earnings (status tiers), in the same
transaction."""

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.analytics import rollups
from backend.kit import jobs
from backend.kit.db import utcnow
from backend.relay import events
from backend.relay.models import Operation, RelayerTransaction
from backend.tiers import earnings
from indexer import reads
from indexer.follower import Progress

BATCH = 500  # operations looked at per write of the indexer


def settle(sessions: sessionmaker[Session], progress: Progress) -> None:
    with jobs.committed(sessions) as session:
        ops = session.scalars(
            select(Operation)
            .where(
                Operation.network == progress.network,
                Operation.status == "mined",
                Operation.block_number <= progress.cursor,
            )
            .order_by(Operation.block_number)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        if not ops:
            return
        keys = [(op.contract_address, op.signer, op.ref) for op in ops]
        found = reads.outcomes(session, progress.network, keys)
        now = utcnow()
        confirmed = []
        for op in ops:
            outcome = found.get((op.contract_address.lower(), op.signer.lower(), op.ref.lower()))
            if outcome is None:
                _left_the_chain(session, op)
            elif outcome.executed:
                op.tx_hash, op.block_number, op.log_index = (
                    outcome.tx_hash,
                    outcome.block_number,
                    outcome.log_index,
                )
                if outcome.block_number <= progress.safe:
                    op.status, op.confirmed_at = "confirmed", now
                    _notify(session, op, "transaction.confirmed")
                    confirmed.append(op)
        earnings.confirmed(session, confirmed)


def _left_the_chain(session: Session, op: Operation) -> None:
    rollups.operations_unsettled(session, [op.id])  # counted when mined, and will be when mined again
    op.status, op.block_number, op.log_index, op.finished_at = "submitted", None, None, None
    carrier = None if op.relayer_tx_id is None else session.get(RelayerTransaction, op.relayer_tx_id)
    if carrier is not None and carrier.status == "mined":
        carrier.status, carrier.block_number, carrier.finished_at = "pending", None, None
    _notify(session, op, "transaction.submitted")


def _notify(session: Session, op: Operation, event_type: str) -> None:
    events.notify_changed(session, [op], event_type)
