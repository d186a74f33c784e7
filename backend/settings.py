"""The one place configuration is read: `PERS_*` environment variables, `.env`, and
`hardhat-free-config.toml` (compiler and networks)."""

import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, PositiveInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.kit.errors import ConfigError
from backend.kit.keystore import Keystore, dev_master_key, dev_secret, parse_master_key

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_ENV_REF = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


class CompilerConfig(BaseModel):
    solc: str
    evm_version: str
    optimizer: bool
    optimizer_runs: int
    sources: list[str]


class NetworkConfig(BaseModel):
    name: str
    chain_id: int
    rpc_url: str | None = None  # None: the embedded EVM
    confirmations: int
    block_time: float
    dev: bool = False
    max_fee_gwei: float | None = None
    max_priority_fee_gwei: float | None = None
    deployments: Path
    tx_gas_cap: int
    admin_float_eth: float  # kept on each tenant admin account for its role and registry transactions

    @property
    def embedded(self) -> bool:
        return self.rpc_url is None


class ChainConfig(BaseModel):
    compiler: CompilerConfig
    networks: dict[str, NetworkConfig]

    def network(self, name: str) -> NetworkConfig:
        try:
            return self.networks[name]
        except KeyError:
            known = ", ".join(sorted(self.networks))
            raise ConfigError(f"unknown network {name!r} (known: {known})", code="unknown_network") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERS_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".pers")
    config_file: Path = PROJECT_ROOT / "hardhat-free-config.toml"
    contracts_dir: Path = PROJECT_ROOT / "contracts"
    network: str = "embedded"
    rpc_url: str | None = None
    master_key: SecretStr | None = None
    # Pays gas for platform transactions. Dev networks fall back to the well-known test mnemonic.
    relayer_key: SecretStr | None = None
    log_level: str = "info"

    database_url: str | None = None  # default: SQLite in the data directory
    broker_url: str = "memory://"  # the embedded default: Celery in process
    queue: str = "pers"  # the broker queue the API sends jobs to and the workers consume
    redis_url: str | None = None  # shared rate limits; in-memory when unset
    jwt_secret: SecretStr | None = None  # default: generated into the data directory
    operator_token: SecretStr | None = None
    test_network: str | None = None  # the `test` environment's network; default: `network`
    live_network: str | None = None  # the `live` environment deploys only when set
    siwe_domains: list[str] = ["localhost:8000", "127.0.0.1:8000"]
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    siwe_nonce_ttl: int = 600
    rate_limit_window: int = 60
    rate_limit_per_key: int = 600  # per API key or session, per window
    rate_limit_per_address: int = 120  # per client address, per window
    max_body_bytes: PositiveInt = 1024 * 1024  # a larger request body is refused with 413 before it is read

    def chain_config(self) -> ChainConfig:
        return load_chain_config(self.config_file, self.data_dir)

    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'pers.db').resolve()}"

    def network_for(self, environment: str) -> str | None:
        return (self.test_network or self.network) if environment == "test" else self.live_network

    def secret_jwt_key(self) -> bytes:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value().encode()
        return dev_secret(self.data_dir, "jwt.key")

    def keystore(self) -> Keystore:
        if self.master_key is not None:
            return Keystore(parse_master_key(self.master_key.get_secret_value()))
        return Keystore(dev_master_key(self.data_dir))


def _expand(value: str, where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name, default)
        if found is None:
            raise ConfigError(
                f"{where} needs the environment variable {name}", code="missing_env", variable=name
            )
        return found

    return _ENV_REF.sub(substitute, value)


@cache
def load_chain_config(path: Path, data_dir: Path) -> ChainConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    defaults: dict[str, Any] = raw.get("defaults", {})
    networks = {}
    for name, spec in raw.get("networks", {}).items():
        merged = {**defaults, **spec, "name": name}
        pattern = str(merged["deployments"])
        merged["deployments"] = PROJECT_ROOT / pattern.format(data_dir=data_dir.resolve(), network=name)
        networks[name] = merged
    return ChainConfig.model_validate({"compiler": raw["compiler"], "networks": networks})


def resolve_rpc_url(network: NetworkConfig, override: str | None = None) -> str | None:
    """The network's JSON-RPC URL with `${VAR}` references expanded; None for the embedded EVM."""
    url = override or network.rpc_url
    return None if url is None else _expand(url, f"network {network.name!r}")


def get_settings() -> Settings:
    return Settings()
