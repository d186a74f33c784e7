"""The one place configuration is read: `PERS_*` environment variables, `.env`, and
`hardhat-free-config.toml` (compiler and networks)."""

import json
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from backend.kit.errors import ConfigError, PersError
from backend.kit.keystore import Keystore, dev_master_key, dev_secret, parse_master_key

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_SECRET_BYTES = 32
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


def _split(value: Any) -> Any:
    """A list variable: a JSON array, or items separated by commas (`a.example,b.example`)."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        return json.loads(value)  # a JSONDecodeError is a ValueError: reported as a bad setting
    return [item.strip() for item in value.split(",") if item.strip()]


StrList = Annotated[list[str], NoDecode, BeforeValidator(_split)]
Positive = Annotated[int, Field(gt=0)]
LogLevel = Literal["debug", "info", "warning", "error"]


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
    log_level: LogLevel = "info"

    database_url: str | None = None  # default: SQLite in the data directory
    broker_url: str = "memory://"  # the embedded default: Celery in process
    queue: str = "pers"  # the broker queue the API sends jobs to and the workers consume
    redis_url: str | None = None  # shared rate limits; in-memory when unset
    # `pers api` processes on one port (a production host: its cores); more than one needs `redis_url`.
    api_workers: Positive = 1
    jwt_secret: SecretStr | None = None  # default: generated into the data directory
    operator_token: SecretStr | None = None
    test_network: str | None = None  # the `test` environment's network; default: `network`
    live_network: str | None = None  # the `live` environment deploys only when set
    siwe_domains: StrList = ["localhost:8000", "127.0.0.1:8000"]
    # Addresses of the proxies whose X-Forwarded-For / X-Forwarded-Proto count ("*" for any); none by default.
    trusted_proxies: StrList = []
    access_token_ttl: Positive = 900
    refresh_token_ttl: Positive = 14 * 24 * 3600  # unused this long, a session ends
    # However often refreshed, a session ends this long after sign-in.
    session_lifetime: Positive = 30 * 24 * 3600
    siwe_nonce_ttl: Positive = 600
    rate_limit_window: Positive = 60
    # Per API key or session (a project key: per key and address), per window.
    rate_limit_per_key: Positive = 600
    rate_limit_per_address: Positive = 120  # per client address, per window
    rate_limit_auth_failures: Positive = 30  # failed authentications per client address, per window
    # Password sign-ins per address per 10 s: no more than the password pool hashes in a second.
    rate_limit_signin_per_address: Positive = 10
    signin_failure_window: Positive = 900
    signin_failures_per_address: Positive = 10  # wrong passwords per (identity, address), per failure window
    # Per identity from all addresses; once spent, only addresses without a failure may still try.
    signin_failures_per_identity: Positive = 100

    # Serves /metrics without a credential on this port (API and worker processes), for a scraper on a
    # private network; unset: only `GET /metrics` on the API, with the operator token.
    metrics_port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    metrics_host: str = "127.0.0.1"

    # The relay: lane wallets (one nonce sequence each) and how many operations one transaction carries.
    # Dev networks use funded development accounts for their lanes; others need PERS_RELAY_LANE_KEYS.
    relay_lanes: Positive = 1
    relay_lane_keys: Annotated[list[SecretStr], NoDecode, BeforeValidator(_split)] = []
    relay_max_ops_per_tx: Positive = 1000  # within the gas cap and the pool size limit, whichever binds
    # A transaction without a receipt is re-sent from its stored bytes after this many seconds (a node
    # restart loses its mempool), and replaced with the same nonce and 25% higher fees after the other.
    relay_resend_after: Annotated[float, Field(gt=0)] = 15.0
    relay_replace_after: Annotated[float, Field(gt=0)] = 60.0

    # The indexer: range fetches in flight, the largest `eth_getLogs` range, the answer size above which
    # ranges shrink, the headers kept below the head to detect reorgs, and the idle poll (seconds).
    indexer_fetchers: Positive = 3
    indexer_max_range: Positive = 10_000
    indexer_target_logs: Positive = 5_000
    indexer_reorg_window: Positive = 64
    indexer_poll_interval: Annotated[float, Field(gt=0)] = 1.0
    indexer_rpc_timeout: Annotated[float, Field(gt=0)] = 30.0  # seconds; a slower answer is a node fault

    # Webhook retries: the first after about this long, doubling (at most an hour apart) for the window.
    webhook_retry_base_ms: Positive = 10_000
    webhook_retry_window: Positive = 24 * 3600  # seconds after the event; then the delivery is `failed`

    # How long an API process reuses an active token's row (a token that stops being active is refused
    # within this time); 0: read on every request.
    token_cache_seconds: Annotated[float, Field(ge=0)] = 5
    max_body_bytes: Positive = 1024 * 1024  # a larger request body is refused with 413 before it is read

    def check_secrets(self) -> None:
        """Shared secrets a guess could find are refused at start."""
        short = [
            f"PERS_{name.upper()}"
            for name in ("operator_token", "jwt_secret")
            if (value := getattr(self, name)) is not None
            and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES
        ]
        if short:
            raise ConfigError(
                f"{' and '.join(short)} must be at least {MIN_SECRET_BYTES} bytes", code="weak_secret"
            )

    @field_validator("database_url", "redis_url", "broker_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        from sqlalchemy.engine import make_url  # a URL with a scheme, as SQLAlchemy, redis and kombu read

        if value is not None and "://" not in value:
            raise ValueError("not a URL")
        if value is not None:
            make_url(value)  # raises ArgumentError (a ValueError) for what no client could parse
        return value

    @field_validator("data_dir")
    @classmethod
    def _directory(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError("not a directory")
        return value

    @field_validator("relayer_key")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(bytes.fromhex(value.get_secret_value().removeprefix("0x"))) != 32:
            raise ValueError("not 32 bytes")  # bytes.fromhex raises a ValueError for what is not hex
        return value

    @field_validator("master_key")
    @classmethod
    def _master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parse_master_key(value.get_secret_value())
            except PersError as exc:
                raise ValueError(exc.message) from None
        return value

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


LIST_FORM = "a comma-separated list (a.example,b.example) or a JSON array of strings"
# What a bad value should have looked like: by variable, else by the kind of check it failed.
FORMS = {
    "siwe_domains": LIST_FORM,
    "trusted_proxies": LIST_FORM,
    "database_url": "a SQLAlchemy URL (postgresql+psycopg://user@host/db, sqlite:///path)",
    "redis_url": "a redis:// or rediss:// URL",
    "broker_url": "a broker URL (amqp://…, redis://… or memory://)",
    "master_key": "32 bytes, as 64 hex digits or base64",
    "log_level": "one of debug, info, warning, error",
    "data_dir": "a directory (created when missing)",
    "relayer_key": "a private key: 64 hex digits, 0x optional",
    "metrics_port": "a TCP port (1-65535)",
    "relay_lane_keys": "private keys (64 hex digits) separated by commas",
}
CHECKS = {"int_parsing": "a whole number above 0", "greater_than": "a whole number above 0"}


def get_settings() -> Settings:
    """The settings from the environment; a bad value is a `ConfigError` naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = f"PERS_{field.upper()}"
        form = FORMS.get(field) or CHECKS.get(error["type"])
        reason = f"must be {form}" if form else f"is not valid: {error['msg']}"
        raise ConfigError(f"{variable} {reason}", code="invalid_setting", variable=variable) from None
    except SettingsError as exc:
        raise ConfigError(f"bad setting: {exc}", code="invalid_setting") from None
