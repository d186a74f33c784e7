"""Refs for new operations: a random 128-bit namespace per process and a counter, so a process's refs
are unique without a database round trip and consecutive ones share the contracts' bitmap words."""

import itertools
import os
import secrets
import threading

from backend.chain.typed_data import make_ref

_lock = threading.Lock()
_state: tuple[int, int, "itertools.count[int]"] = (0, 0, itertools.count())


def new_ref() -> str:
    global _state
    pid, namespace, counter = _state
    if pid != os.getpid():  # a forked process must not reuse its parent's namespace
        with _lock:
            if _state[0] != os.getpid():
                _state = (os.getpid(), secrets.randbits(128), itertools.count())
            pid, namespace, counter = _state
    return "0x" + make_ref(namespace, next(counter)).hex()
