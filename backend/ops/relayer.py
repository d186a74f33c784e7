"""The relayer wallets as an operator sees them: per network in use, each wallet's balance and its nonces
(the chain's, and the relay's own next nonce where the relay tracks one), plus the relay's queue.

The wallets are the platform's relayer (the settings' key: deploys and role grants) and the relay's lanes,
which come with the queue through `RelayView`, a protocol of this module: `relay_view()` is the one place
that names the implementation (`backend.relay.lanes`; tests may put another in its place)."""

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session
from web3 import Web3
from web3.types import Wei

from backend.chain.client import Chain
from backend.kit.api import Schema
from backend.kit.errors import PersError
from backend.kit.types import Uint256Out
from backend.runtime import Runtime
from backend.settings import NetworkConfig, Settings

# Chains whose ether is real money: `pers relayer fund` refuses them by chain id, whatever their name.
MAINNET_CHAIN_IDS = {1, 10, 56, 100, 137, 8453, 42161, 43114}


class Lane(Protocol):
    """One relayer wallet of the relay: its address and the next nonce it will use."""

    @property
    def address(self) -> str: ...

    @property
    def next_nonce(self) -> int: ...


class RelayView(Protocol):
    """What the relay tells operations (the relay's `backend/relay/status.py` module is one)."""

    def lanes(self, session: Session, network: str) -> Sequence[Lane]: ...

    def queue_depth(self, session: Session) -> int: ...

    def oldest_queued_age(self, session: Session) -> float | None: ...


_views: list[RelayView] = []


def use_relay_view(view: RelayView | None) -> None:
    """Replaces the relay view (tests; None restores the default)."""
    _views[:] = [] if view is None else [view]


def relay_view() -> RelayView:
    """The relay's lanes and queue."""
    if _views:
        return _views[0]
    from backend.relay import lanes

    return lanes


class WalletStatus(Schema):
    address: str
    balance_wei: Uint256Out
    chain_nonce: int  # transactions mined from the wallet
    pending_nonce: int  # including those the node holds in its mempool
    local_nonce: int | None  # the relay's next nonce for the lane; null when no relay tracks one
    nonce_gap: int | None  # local - chain: transactions signed but not yet mined


class NetworkStatus(Schema):
    network: str
    chain_id: int
    environments: list[str]
    wallets: list[WalletStatus]
    error: str | None = None  # the chain could not be read (its wallets are then empty)


class RelayerStatus(Schema):
    networks: list[NetworkStatus]
    queue_depth: int | None
    oldest_queued_age_seconds: float | None


def networks_in_use(settings: Settings) -> dict[str, list[str]]:
    """Network name → the environments that use it."""
    used: dict[str, list[str]] = {}
    for environment in ("test", "live"):
        if (network := settings.network_for(environment)) is not None:
            used.setdefault(network, []).append(environment)
    return used


def wallet_addresses(session: Session | None, chain: Chain) -> dict[str, int | None]:
    """Address → local next nonce: the platform relayer first (None until it has sent through its lane),
    then the lanes (its own and the relay's)."""
    lanes = () if session is None else relay_view().lanes(session, chain.network.name)
    wallets: dict[str, int | None] = {chain.relayer.address: None}
    wallets.update({Web3.to_checksum_address(lane.address): lane.next_nonce for lane in lanes})
    return wallets


def wallet_status(chain: Chain, address: str, local_nonce: int | None) -> WalletStatus:
    eth = chain.w3.eth
    checksum = Web3.to_checksum_address(address)
    chain_nonce = eth.get_transaction_count(checksum, "latest")
    return WalletStatus(
        address=checksum,
        balance_wei=eth.get_balance(checksum),
        chain_nonce=chain_nonce,
        pending_nonce=eth.get_transaction_count(checksum, "pending"),
        local_nonce=local_nonce,
        nonce_gap=None if local_nonce is None else local_nonce - chain_nonce,
    )


def network_status(
    runtime: Runtime, session: Session | None, network: str, environments: list[str]
) -> NetworkStatus:
    config = runtime.settings.chain_config().network(network)
    try:
        chain = runtime.chain(network)
        wallets = [wallet_status(chain, a, n) for a, n in wallet_addresses(session, chain).items()]
    except Exception as exc:  # one unreachable network must not hide the others
        return NetworkStatus(
            network=network,
            chain_id=config.chain_id,
            environments=environments,
            wallets=[],
            error=type(exc).__name__,
        )
    return NetworkStatus(
        network=network, chain_id=config.chain_id, environments=environments, wallets=wallets
    )


def status(runtime: Runtime, session: Session | None) -> RelayerStatus:
    """Every network in use; the queue from the relay (null without one, or without a database)."""
    networks = [
        network_status(runtime, session, n, envs) for n, envs in networks_in_use(runtime.settings).items()
    ]
    view = relay_view()
    if session is None:
        return RelayerStatus(networks=networks, queue_depth=None, oldest_queued_age_seconds=None)
    return RelayerStatus(
        networks=networks,
        queue_depth=view.queue_depth(session),
        oldest_queued_age_seconds=view.oldest_queued_age(session),
    )


class FundRefused(PersError):
    code = "fund_refused"


def check_fundable(network: NetworkConfig) -> None:
    """Only development networks mint ether; a mainnet is refused by its chain id, whatever its name."""
    if network.chain_id in MAINNET_CHAIN_IDS:
        raise FundRefused(
            f"refusing to fund on {network.name}: chain {network.chain_id} is a mainnet", code="mainnet"
        )
    if not network.dev:
        raise FundRefused(f"{network.name} has no development accounts: send it test ether from a faucet")


def fund(chain: Chain, address: str, amount_wei: int) -> int:
    """Adds `amount_wei` to `address` on a development network and returns its new balance. A JSON-RPC
    dev node (anvil) sets the balance; on the embedded EVM the platform's relayer, which holds its ether,
    transfers it (a dev account would be some lane's: a transfer from it would take the lane's nonce)."""
    check_fundable(chain.network)
    checksum = Web3.to_checksum_address(address)
    if chain.network.embedded:
        chain.send({"to": checksum, "value": Wei(amount_wei)})
    else:
        balance = chain.w3.eth.get_balance(checksum)
        chain.rpc("anvil_setBalance", checksum, hex(balance + amount_wei))
    return int(chain.w3.eth.get_balance(checksum))
