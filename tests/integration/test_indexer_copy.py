"""The fetch workers' `COPY` text: rows written through it read back exactly, whatever a log's strings
hold (an ERC-1155 `URI` may carry tabs, newlines and backslashes)."""

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from indexer.decoder import CHANGE_COLUMNS, EVENT_COLUMNS, TRANSFER_BATCH, URI, decode
from indexer.models import BalanceChange, Event
from indexer.store import encode
from tests.conftest import throwaway_postgres

CONTRACT = "0x" + "ab" * 20
HOLDER = "0x" + "00" * 12 + "cd" * 20


def _word(value: int) -> str:
    return f"{value:064x}"


def _log(index: int, topics: list[str], data: str) -> dict[str, str | list[str]]:
    return {
        "address": CONTRACT,
        "topics": topics,
        "data": data,
        "blockNumber": "0x7",
        "blockHash": "0x" + "11" * 32,
        "transactionHash": "0x" + "22" * 32,
        "logIndex": hex(index),
    }


def test_copy_text_round_trips_awkward_strings_and_batches() -> None:
    text = 'tab\there\nnew line \\ back\\nslash "quoted" é\r'
    raw = text.encode()
    uri = "0x" + _word(32) + _word(len(raw)) + raw.hex().ljust(64 * ((len(raw) + 31) // 32), "0")
    batch = (
        "0x" + _word(64) + _word(160) + _word(2) + _word(1) + _word(2) + _word(2) + _word(5) + _word(2**255)
    )
    logs = [
        _log(0, [URI, "0x" + _word(3)], uri),
        _log(1, [TRANSFER_BATCH, HOLDER, "0x" + _word(0), HOLDER], batch),
    ]
    with throwaway_postgres(migrated=True) as url:
        engine = create_engine(url)
        try:
            encoded = encode(decode(31337, logs))
            with engine.begin() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                for table, columns, data in (
                    ("mirror_events", EVENT_COLUMNS, encoded.events),
                    ("mirror_balance_changes", CHANGE_COLUMNS, encoded.changes),
                ):
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        copy.write(data)
            with Session(engine) as session:
                events = {e.log_index: e for e in session.scalars(select(Event))}
                changes = sorted((c.token_id, c.delta) for c in session.scalars(select(BalanceChange)))
        finally:
            engine.dispose()
    assert events[0].name == "URI"
    assert events[0].data == {"id": "3", "value": text}
    assert events[1].name == "TransferBatch"
    assert events[1].data == {"ids": ["1", "2"], "amounts": ["5", str(2**255)]}
    assert events[1].token_id is None
    assert changes == [(1, 5), (2, 2**255)]
    holder = "0x" + HOLDER[-40:]
    assert encoded.deltas == {(CONTRACT, 1, holder): 5, (CONTRACT, 2, holder): 2**255}
