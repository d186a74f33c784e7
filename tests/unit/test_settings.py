"""Configuration: networks from hardhat-free-config.toml, `${VAR}` expansion, clear refusals."""

from pathlib import Path

import pytest

from backend.kit.errors import ConfigError
from backend.settings import Settings, get_settings, resolve_rpc_url

NETWORKS = {"embedded", "local", "sepolia", "polygon-amoy", "base-sepolia", "ethereum", "polygon", "base"}


def test_every_documented_network_is_configured(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path).chain_config()
    assert set(config.networks) == NETWORKS
    local = config.network("local")
    assert (local.chain_id, local.dev, local.tx_gas_cap) == (31337, True, 16_777_216)
    assert local.deployments == tmp_path.resolve() / "deployments" / "local.json"
    assert config.network("embedded").embedded
    assert config.network("base").chain_id == 8453 and not config.network("base").dev


def test_rpc_urls_expand_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Settings(data_dir=tmp_path).chain_config()
    monkeypatch.delenv("PERS_LOCAL_RPC_URL", raising=False)
    assert resolve_rpc_url(config.network("local")) == "http://127.0.0.1:8545"
    monkeypatch.setenv("PERS_LOCAL_RPC_URL", "http://127.0.0.1:9999")
    assert resolve_rpc_url(config.network("local")) == "http://127.0.0.1:9999"
    monkeypatch.delenv("SEPOLIA_RPC_URL", raising=False)
    with pytest.raises(ConfigError) as missing:
        resolve_rpc_url(config.network("sepolia"))
    assert missing.value.code == "missing_env" and "SEPOLIA_RPC_URL" in missing.value.message
    assert resolve_rpc_url(config.network("sepolia"), "http://override") == "http://override"
    assert resolve_rpc_url(config.network("embedded")) is None


def test_unknown_network_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as unknown:
        Settings(data_dir=tmp_path).chain_config().network("mars")
    assert unknown.value.code == "unknown_network" and "sepolia" in unknown.value.message


@pytest.mark.parametrize(
    ("value", "domains"),
    [
        ("app.example.com", ["app.example.com"]),
        ("a.example, b.example:8443", ["a.example", "b.example:8443"]),
        ('["a.example", "b.example"]', ["a.example", "b.example"]),
    ],
)
def test_list_settings_take_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, domains: list[str]
) -> None:
    monkeypatch.setenv("PERS_SIWE_DOMAINS", value)
    assert get_settings().siwe_domains == domains


BAD_SETTINGS = [
    ("PERS_SIWE_DOMAINS", '["a.example"', "comma-separated list"),
    ("PERS_SIWE_DOMAINS", "[1, 2]", "JSON array of strings"),
    ("PERS_RATE_LIMIT_PER_KEY", "abc", "a whole number above 0"),
    ("PERS_RATE_LIMIT_WINDOW", "0", "a whole number above 0"),
    ("PERS_LOG_LEVEL", "loud", "one of debug, info, warning, error"),
    ("PERS_DATABASE_URL", "pers.db", "a SQLAlchemy URL"),
    ("PERS_REDIS_URL", "localhost:6379", "redis://"),
    ("PERS_BROKER_URL", "rabbit", "a broker URL"),
    ("PERS_MASTER_KEY", "not-a-key", "32 bytes"),
    ("PERS_DATA_DIR", __file__, "a directory"),
    ("PERS_RELAYER_KEY", "0x1234", "64 hex digits"),
]


@pytest.mark.parametrize(("variable", "value", "form"), BAD_SETTINGS)
def test_a_bad_setting_names_its_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, form: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as bad:
        get_settings()
    assert bad.value.code == "invalid_setting" and bad.value.message.startswith(f"{variable} must be ")
    assert form in bad.value.message and "\n" not in bad.value.message
    if variable in ("PERS_MASTER_KEY", "PERS_RELAYER_KEY"):
        assert value not in bad.value.message  # a secret is never echoed
