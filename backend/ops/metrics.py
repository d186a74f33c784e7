"""Prometheus metrics.

Two kinds, for processes that may run many times on many machines:
- Events counted where they happen (HTTP requests in the API; operation latency and gas used in the
  worker that sees the receipt): process-local instruments in `REGISTRY`. Prometheus scrapes each
  process and sums across instances (`sum without(instance)`).
- State (outbox and relay queues, relayer balances and nonces, indexer lag): computed on scrape from
  the database and the chain by `StateCollector`, so every API process reports the same truth and
  nothing goes stale when a worker dies. Only API processes serve them; a worker's metrics port serves
  its events alone."""

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web3 import Web3

from backend.kit.db import unit_of_work
from backend.kit.outbox import OutboxMessage
from backend.ops import indexing, relayer
from backend.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: start times Prometheus does not need
REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter(
    "pers_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "pers_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    registry=REGISTRY,
)
OPERATION_LATENCY = Histogram(
    "pers_relay_operation_seconds",
    "From an operation's acceptance to its final outcome on chain.",
    ["network", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)
GAS_USED = Counter("pers_relay_gas_used", "Gas used by relay transactions.", ["network"], registry=REGISTRY)
UNMATCHED = "unmatched"  # any path no route serves: one label, however many paths scanners try


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    template = route or UNMATCHED
    HTTP_REQUESTS.labels(method, template, str(status)).inc()
    HTTP_LATENCY.labels(method, template).observe(seconds)


def observe_operations(network: str, outcome: str, seconds: Iterable[float]) -> None:
    """For the relay: operations reached `mined` or `failed`, each `seconds` after it was accepted."""
    histogram = OPERATION_LATENCY.labels(network, outcome)  # looked up once: a thousand cost 2% of the worker
    for value in seconds:
        histogram.observe(value)


def add_gas_used(network: str, gas: int) -> None:
    """For the relay: a transaction's receipt reported `gas` used."""
    GAS_USED.labels(network).inc(gas)


class StateCollector(Collector):
    """Gauges read on each scrape. A dependency that cannot be read drops its gauges and sets its
    `pers_scrape_ok` to 0, so an alert can tell "zero" from "unknown"."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily(
            "pers_scrape_ok", "1 when the source could be read on this scrape.", labels=["source"]
        )
        pending = GaugeMetricFamily(
            "pers_outbox_pending", "Jobs not yet completed, by task.", labels=["task"]
        )
        queue = GaugeMetricFamily("pers_relay_queue_depth", "Operations queued for the chain.")
        oldest = GaugeMetricFamily("pers_relay_oldest_queued_seconds", "Age of the oldest queued operation.")
        lag = self._lag_families()
        try:
            with unit_of_work(self.runtime.sessions) as session:
                query = (
                    select(OutboxMessage.task, func.count())
                    .where(OutboxMessage.completed_at.is_(None))
                    .group_by(OutboxMessage.task)
                )
                for task, count in session.execute(query):
                    pending.add_metric([task], count)
                report = relayer.status(self.runtime, session)
                self._lag(session, lag)
            ok.add_metric(["database"], 1)
        except Exception:  # the database is down: report the chain alone
            ok.add_metric(["database"], 0)
            report = relayer.status(self.runtime, None)
        if report.queue_depth is not None:
            queue.add_metric([], report.queue_depth)
        if report.oldest_queued_age_seconds is not None:
            oldest.add_metric([], report.oldest_queued_age_seconds)
        yield from (pending, queue, oldest, *lag, *self._wallets(report, ok), ok)

    def _lag_families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["network"]
        return (
            GaugeMetricFamily("pers_indexer_block", "The last block in the chain mirror.", labels=labels),
            GaugeMetricFamily(
                "pers_indexer_lag_blocks", "The node's head less the mirror's last block.", labels=labels
            ),
            GaugeMetricFamily(
                "pers_indexer_lag_seconds",
                "Age of the oldest block the mirror does not hold yet (0: it holds the head).",
                labels=labels,
            ),
        )

    def _lag(
        self, session: Session, families: tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]
    ) -> None:
        block, blocks, seconds = families
        for network in indexing.networks(self.runtime):
            found = indexing.lag(self.runtime, session, network)
            if found is None:
                continue
            block.add_metric([network], found.block)
            if found.blocks is not None and found.seconds is not None:  # the node answered
                blocks.add_metric([network], found.blocks)
                seconds.add_metric([network], found.seconds)

    def _wallets(self, report: relayer.RelayerStatus, ok: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        labels = ["network", "address"]
        balance = GaugeMetricFamily(
            "pers_relayer_balance_eth", "A relayer wallet's balance in ether.", labels=labels
        )
        chain_nonce = GaugeMetricFamily(
            "pers_relayer_chain_nonce", "Transactions mined from the wallet.", labels=labels
        )
        gap = GaugeMetricFamily(
            "pers_relayer_nonce_gap",
            "The relay's next nonce minus the chain's (signed, not mined).",
            labels=labels,
        )
        for network in report.networks:
            ok.add_metric([f"chain:{network.network}"], 0 if network.error else 1)
            for wallet in network.wallets:
                key = [network.network, wallet.address]
                balance.add_metric(key, float(Web3.from_wei(wallet.balance_wei, "ether")))
                chain_nonce.add_metric(key, wallet.chain_nonce)
                if wallet.nonce_gap is not None:
                    gap.add_metric(key, wallet.nonce_gap)
        yield from (balance, chain_nonce, gap)


def _events() -> Collector:
    """This process's events, or every API process's when they share them."""
    try:
        shared = CollectorRegistry()
        MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        return shared
    except ValueError:  # not one of several `pers api` processes (PROMETHEUS_MULTIPROC_DIR unset)
        return REGISTRY


class Exposition(Collector):
    """What a process serves: its events, plus the state gauges when it is an API process."""

    def __init__(self, state: StateCollector | None) -> None:
        self.state = state
        self.events = _events()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        events = list(self.events.collect())
        yield from events  # type: ignore[misc]
        if self.events is not REGISTRY:  # shared files name only the families something was counted in
            seen = {family.name for family in events}
            yield from (f for f in REGISTRY.collect() if f.name not in seen)  # type: ignore[misc]
        if self.state is not None:
            yield from self.state.collect()


def render(exposition: Exposition) -> bytes:
    return generate_latest(exposition)


def serve(exposition: Exposition, host: str, port: int) -> None:
    """The unauthenticated metrics port (PERS_METRICS_PORT), for a scraper on a private network."""
    start_http_server(port, addr=host, registry=exposition)
