"""The indexer wired into the platform (`pers indexer`, `pers up`): its options from the settings and
the network's confirmation depth, the factory from the platform's deployment, the embedded EVM or a
node over HTTP, and the relay's confirmations as its hook."""

from functools import partial

from backend.chain.deploy import FACTORY, recorded_platform
from backend.relay import confirmations
from backend.runtime import Runtime
from backend.settings import resolve_rpc_url
from indexer.follower import Follower, Options
from indexer.rpc import EmbeddedRpc, HttpRpc, Rpc


def follower(runtime: Runtime, network: str, rpc_url: str | None = None) -> Follower:
    settings = runtime.settings
    chain = runtime.chain(network)
    url = resolve_rpc_url(chain.network, rpc_url or settings.rpc_url)
    rpc: Rpc
    if url is None:  # the embedded EVM lives in this process; `pers up` deploys the platform on it
        rpc, factory = EmbeddedRpc(chain.w3), runtime.platform(network).contracts[FACTORY]
    else:
        rpc, factory = HttpRpc(url, settings.indexer_rpc_timeout), recorded_platform(chain)[FACTORY]
    options = Options(
        confirmations=chain.network.confirmations,
        poll_interval=settings.indexer_poll_interval,
        fetchers=1 if url is None else settings.indexer_fetchers,
        max_range=settings.indexer_max_range,
        target_logs=settings.indexer_target_logs,
        reorg_window=settings.indexer_reorg_window,
    )
    hook = partial(confirmations.settle, runtime.sessions)
    return Follower(network, rpc, runtime.sessions, factory, options, hooks=[hook])
