"""What one process holds: settings, the database engine, the keystore, chain connections and the
rate limiter. `pers up` shares one runtime between the API and the in-process worker, so both see
the same embedded EVM."""

import threading
import uuid
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.chain.client import Chain, connect
from backend.chain.deploy import PlatformDeployment, deploy_platform
from backend.kit import datadir, jobs
from backend.kit.db import make_engine, make_sessionmaker
from backend.kit.errors import PersError
from backend.kit.keystore import Keystore
from backend.kit.ratelimit import RateLimiter, build_rate_limiter
from backend.relay.lanes import LaneNonces
from backend.settings import Settings


class RateLimited(PersError):
    code = "rate_limited"
    status = 429


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keystore: Keystore
    rate_limiter: RateLimiter
    _chains: dict[str, Chain] = field(default_factory=dict)
    _platforms: dict[str, PlatformDeployment] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Runtime":
        datadir.secure(settings.data_dir)
        engine = make_engine(settings.sqlalchemy_url())
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            keystore=settings.keystore(),
            rate_limiter=build_rate_limiter(settings.redis_url),
        )

    def dispatch(self, job_id: uuid.UUID) -> None:
        jobs.dispatch(job_id)  # sent the way the worker module registered

    def chain(self, network: str) -> Chain:
        with self._lock:
            if network not in self._chains:
                chain = connect(self.settings, network)
                # Lanes share nonces with every process on the database. The embedded EVM lives in one
                # process and starts empty each run, where stored nonces and transactions mean nothing:
                # it keeps the node's nonces.
                if not chain.network.embedded:
                    chain.nonces = LaneNonces(self.sessions)
                self._chains[network] = chain
            return self._chains[network]

    def platform(self, network: str) -> PlatformDeployment:
        """The platform contracts on `network`, deployed on first use (idempotent)."""
        chain = self.chain(network)
        with self._lock:
            if network not in self._platforms:
                self._platforms[network] = deploy_platform(chain)
            return self._platforms[network]


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The process's runtime; worker processes build it from the environment on first use."""
    global _current
    if _current is None:
        from backend.settings import get_settings

        _current = Runtime.from_settings(get_settings())
    return _current
