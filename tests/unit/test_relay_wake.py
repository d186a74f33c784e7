"""Accepting operations wakes the pumps: this process's at once, the others' by a Postgres NOTIFY sent
at most once per `NOTIFY_EVERY` per process (their poll finds what a spared one would announce)."""

from types import SimpleNamespace

import pytest

from backend.relay import events


class _Session:
    def __init__(self, dialect: str) -> None:
        self.dialect, self.sent = dialect, 0

    def get_bind(self) -> SimpleNamespace:
        return SimpleNamespace(dialect=SimpleNamespace(name=self.dialect))

    def execute(self, statement: object) -> None:
        assert statement is events._NOTIFY
        self.sent += 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(events, "_notified", float("-inf"))
    return now


def test_one_notify_per_interval(clock: list[float]) -> None:
    session = _Session("postgresql")
    events.queued.clear()
    events.wake(session)  # type: ignore[arg-type]
    assert events.queued.is_set() and session.sent == 1
    clock[0] += events.NOTIFY_EVERY / 2
    events.wake(session)  # type: ignore[arg-type]
    assert session.sent == 1  # spared: the pumps were told a moment ago
    clock[0] += events.NOTIFY_EVERY
    events.wake(session)  # type: ignore[arg-type]
    assert session.sent == 2


def test_sqlite_wakes_its_own_pump_only(clock: list[float]) -> None:
    session = _Session("sqlite")
    events.queued.clear()
    events.wake(session)  # type: ignore[arg-type]
    assert events.queued.is_set() and session.sent == 0
