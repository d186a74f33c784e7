"""Platform deployment (idempotent, recorded per network) and tenant contract creation through the factory."""

import fcntl
import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from backend.chain.client import Chain
from backend.kit.errors import ChainError, ConfigError

FACTORY = "TokenFactory"
ROUTER = "ExchangeRouter"
# What a deployment record names; a record missing one (made before it existed) is deployed afresh.
PLATFORM_CONTRACTS = (FACTORY, "CreditTokenImplementation", "RewardsTokenImplementation", ROUTER)


class ContractKind(IntEnum):
    """Mirrors `TokenFactory.ContractKind`."""

    CREDIT = 0
    REWARDS = 1


class TokenKind(IntEnum):
    """Mirrors `RewardsToken.Kind`."""

    REWARD = 1
    STATUS = 2


@dataclass(frozen=True)
class PlatformDeployment:
    network: str
    chain_id: int
    contracts: dict[str, ChecksumAddress]
    deployed_now: bool

    def as_json(self) -> dict[str, Any]:
        return {"network": self.network, "chainId": self.chain_id, "contracts": self.contracts}


def deploy_platform(chain: Chain, record: Path | None = None) -> PlatformDeployment:
    """Deploys the factory (which deploys and locks the token implementations and deploys the exchange
    router) unless the record names every platform contract and they still have code on this chain,
    and registers the chain's relayer with it; nothing is sent when both are already so. The processes
    sharing the record (workers, the API, the indexer, `pers chain deploy`) take turns: two workers
    starting on a new network once deployed a platform each, and tokens made by one factory refused
    the other's exchange router (`NotExchangeRouter`)."""
    record = record or chain.network.deployments
    record.parent.mkdir(parents=True, exist_ok=True)
    with open(record.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        return _deploy_platform(chain, record)


def _deploy_platform(chain: Chain, record: Path) -> PlatformDeployment:
    existing = _read_record(record)
    if (
        existing
        and existing.get("chainId") == chain.chain_id
        and set(PLATFORM_CONTRACTS) <= set(existing["contracts"])
        and all(chain.has_code(a) for a in existing["contracts"].values())
    ):
        register_relayer(chain, existing["contracts"][FACTORY], chain.relayer.address)
        return PlatformDeployment(
            chain.network.name, chain.chain_id, existing["contracts"], deployed_now=False
        )
    factory_address, _ = chain.deploy(FACTORY)
    register_relayer(chain, factory_address, chain.relayer.address)
    factory = chain.contract(FACTORY, factory_address)
    contracts = {
        FACTORY: factory_address,
        "CreditTokenImplementation": factory.functions.creditImplementation().call(),
        "RewardsTokenImplementation": factory.functions.rewardsImplementation().call(),
        ROUTER: factory.functions.exchangeRouter().call(),
    }
    deployment = PlatformDeployment(chain.network.name, chain.chain_id, contracts, deployed_now=True)
    written = record.with_suffix(".tmp")
    written.write_text(json.dumps(deployment.as_json(), indent=2) + "\n")
    written.replace(record)  # whole: the indexer reads the record without the lock
    return deployment


def recorded_platform(chain: Chain, record: Path | None = None) -> dict[str, ChecksumAddress]:
    """The platform contracts `deploy_platform` recorded for this chain; a `ConfigError` when none are."""
    existing = _read_record(record or chain.network.deployments)
    if not existing or existing.get("chainId") != chain.chain_id:
        raise ConfigError(
            f"no platform deployment recorded for {chain.network.name}: run `pers chain deploy`",
            code="not_deployed",
        )
    contracts: dict[str, ChecksumAddress] = existing["contracts"]
    return contracts


def register_relayer(chain: Chain, factory_address: str, relayer: str) -> None:
    """Lets `relayer` execute signed operations on every tenant contract of this factory (sent by the
    factory's owner, the platform deployer); nothing is sent when it already may."""
    factory = chain.contract(FACTORY, factory_address)
    if not factory.functions.isRelayer(relayer).call():
        chain.call(factory, "setRelayer", relayer, True)


def _read_record(record: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return data


@dataclass(frozen=True)
class CreditSpec:
    salt: bytes  # 32 bytes, unique within the tenant: fixes the clone's address
    name: str
    symbol: str
    decimals: int = 0
    max_supply: int = 0  # 0: unlimited


def tenant_key(slug: str, environment: str) -> bytes:
    """The 32-byte key naming a tenant environment in factory events."""
    return Web3.keccak(text=f"{slug}:{environment}")


def create_tenant_contracts(
    chain: Chain,
    factory_address: str,
    key: bytes,
    admin: str,
    minters: list[str],
    rewards_uri: str = "",
    credits: tuple[CreditSpec, ...] = (),
) -> tuple[dict[ContractKind, list[ChecksumAddress]], TxReceipt]:
    """Onboards a tenant in one transaction: its rewards/status ERC-1155 and any credit tokens, as clones."""
    factory = chain.contract(FACTORY, factory_address)
    calls = [factory.encode_abi("createRewards", args=[key, rewards_uri, admin, minters])]
    calls += [_credit_call(factory_address, chain, key, spec, admin, minters) for spec in credits]
    receipt = chain.send(
        {"to": factory.address, "data": HexStr(factory.encode_abi("multicall", args=[calls]))}
    )
    return created_contracts(chain, factory_address, receipt), receipt


def create_credit(
    chain: Chain, factory_address: str, key: bytes, spec: CreditSpec, admin: str, minters: list[str]
) -> tuple[ChecksumAddress, TxReceipt]:
    data = _credit_call(factory_address, chain, key, spec, admin, minters)
    receipt = chain.send({"to": Web3.to_checksum_address(factory_address), "data": HexStr(data)})
    return created_contracts(chain, factory_address, receipt)[ContractKind.CREDIT][0], receipt


def _credit_call(
    factory_address: str, chain: Chain, key: bytes, spec: CreditSpec, admin: str, minters: list[str]
) -> str:
    factory = chain.contract(FACTORY, factory_address)
    args = [key, spec.salt, spec.name, spec.symbol, spec.decimals, spec.max_supply, admin, minters]
    return str(factory.encode_abi("createCredit", args=args))


def created_contracts(
    chain: Chain, factory_address: str, receipt: TxReceipt
) -> dict[ContractKind, list[ChecksumAddress]]:
    factory = chain.contract(FACTORY, factory_address)
    created: dict[ContractKind, list[ChecksumAddress]] = {kind: [] for kind in ContractKind}
    for event in factory.events.TenantContractCreated().process_receipt(receipt, errors=DISCARD):
        created[ContractKind(event["args"]["kind"])].append(event["args"]["contractAddress"])
    if not created[ContractKind.CREDIT] and not created[ContractKind.REWARDS]:
        raise ChainError("the factory reported no new contract")
    return created
