"""CPU seconds spent by the processes of a benchmark, from /proc: on a shared machine wall-clock rates
swing with the neighbours' load, CPU time per operation much less."""

import os
import resource
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
PidSource = Callable[[], Iterable[int]]


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or not Linux
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (an API's worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    pids, index = [pid], 0
    while index < len(pids):
        pids += parents.get(pids[index], [])
        index += 1
    return pids


def _cpu(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process among `pids`."""
    found = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            found[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return found


def _own() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU seconds per named group of processes between `start` and `stop`, process by process (an
    API's workers or a database's backends may come and go: one seen only at the end counts from its
    start). "loadgen" is this process."""

    def __init__(self, groups: Mapping[str, PidSource]) -> None:
        self.groups = groups
        self.spent: dict[str, float] = {}

    def _read(self) -> dict[str, dict[int, float]]:
        figures = {name: _cpu(source()) for name, source in self.groups.items()}
        figures["loadgen"] = {os.getpid(): _own()}
        return figures

    def start(self) -> None:
        self._started = self._read()

    def stop(self) -> None:
        ended = self._read()
        self.spent = {
            name: sum(cpu - self._started[name].get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in ended.items()
        }

    def per_operation_ms(self, operations: int) -> dict[str, float]:
        figures = {name: round(1000 * spent / operations, 3) for name, spent in self.spent.items()}
        figures["total"] = round(sum(figures.values()), 3)
        return figures
