"""Operations without a stack: which networks `pers relayer fund` refuses, and the request metrics."""

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.kit.errors import ConfigError
from backend.ops import metrics, relayer
from backend.settings import Settings, get_settings


@pytest.fixture
def chains(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.mark.parametrize("network", ["ethereum", "polygon", "base"])
def test_mainnets_are_refused_by_chain_id(chains: Settings, network: str) -> None:
    config = chains.chain_config().network(network)
    with pytest.raises(relayer.FundRefused) as refused:
        relayer.check_fundable(config)
    assert refused.value.code == "mainnet" and "mainnet" in refused.value.message
    renamed = config.model_copy(update={"name": "my-devnet", "dev": True})  # a name proves nothing
    with pytest.raises(relayer.FundRefused):
        relayer.check_fundable(renamed)


def test_only_development_networks_are_funded(chains: Settings) -> None:
    for network in ("embedded", "local"):
        relayer.check_fundable(chains.chain_config().network(network))
    with pytest.raises(relayer.FundRefused, match="faucet"):
        relayer.check_fundable(chains.chain_config().network("sepolia"))


def test_requests_are_counted_by_route_template_never_by_raw_path() -> None:
    metrics.observe_request("GET", "/v1/users/{user_id}", 404, 0.01)
    metrics.observe_request("GET", None, 404, 0.01)
    text = metrics.render(metrics.Exposition(None)).decode()
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(text)
        if family.name == "pers_http_requests"
        for sample in family.samples
    }
    assert {"/v1/users/{user_id}", "unmatched"} <= routes


def test_a_bad_metrics_port_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERS_METRICS_PORT", "70000")
    with pytest.raises(ConfigError, match="PERS_METRICS_PORT must be a TCP port"):
        get_settings()
