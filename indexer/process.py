"""The indexer of one network as a process runs it: lead (or stand by until the leader goes), follow,
and stand by again if leadership is lost, until told to stop."""

import threading

from sqlalchemy.engine import Engine

from indexer.follower import Follower
from indexer.leader import leadership


def run(follower: Follower, engine: Engine, stop: threading.Event) -> None:
    while not stop.is_set():
        with leadership(engine, follower.network, stop) as lead:
            if lead is None:
                return
            follower.is_leader = lead
            follower.run(stop)


def start(follower: Follower, engine: Engine, stop: threading.Event) -> threading.Thread:
    """The indexer in a thread of this process (`pers up`)."""
    thread = threading.Thread(
        target=run, args=(follower, engine, stop), name=f"indexer-{follower.network}", daemon=True
    )
    thread.start()
    return thread
