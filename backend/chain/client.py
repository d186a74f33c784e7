"""A connection to one network: the embedded EVM (py-evm through eth-tester) or a JSON-RPC node.
Sends the platform's own transactions (deployments, tenant onboarding) from the relayer account,
with EIP-1559 fees and the per-transaction gas cap enforced before anything is broadcast."""

import threading
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3Exception
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint, RPCResponse, TxParams, TxReceipt, Wei

from backend.chain.artifacts import abi, artifact
from backend.kit.errors import ChainError, ChainUnavailable, ConfigError, GasCapExceeded
from backend.settings import NetworkConfig, Settings, resolve_rpc_url

# The well-known development mnemonic (anvil, hardhat): its accounts are funded on dev networks.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
GAS_HEADROOM = 1.2  # gas limit = estimate * headroom, never above the cap
RECEIPT_TIMEOUT = 120.0

Account.enable_unaudited_hdwallet_features()


def dev_account(index: int = 0) -> LocalAccount:
    account: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return account


class Nonces(Protocol):
    """Gives a platform transaction its sender's next nonce, signs it and broadcasts it; returns its hash."""

    def broadcast(self, chain: "Chain", sender: LocalAccount, tx: TxParams) -> HexBytes: ...


@dataclass
class NodeNonces:
    """Nonces read from the node, one transaction at a time in this process: for a connection with
    no database (the CLI's deploy, benches, test fixtures). The platform's processes keep theirs in
    Postgres lanes instead (`backend.relay.lanes.LaneNonces`), shared by every worker."""

    _sending: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def broadcast(self, chain: "Chain", sender: LocalAccount, tx: TxParams) -> HexBytes:
        with self._sending:
            nonce = chain.w3.eth.get_transaction_count(sender.address, "pending")
            signed = sender.sign_transaction({**tx, "nonce": nonce})  # type: ignore[dict-item]
            return chain.w3.eth.send_raw_transaction(signed.raw_transaction)


@dataclass
class Chain:
    w3: Web3
    network: NetworkConfig
    relayer: LocalAccount
    nonces: Nonces = field(default_factory=NodeNonces, repr=False, compare=False)  # the relayer's
    # Tenant admins' role and registry transactions: their own wallets, kept out of the platform's
    # lanes and relayer views; a nonce race between workers is retried by the job.
    admin_nonces: NodeNonces = field(default_factory=NodeNonces, repr=False, compare=False)

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))

    def has_code(self, address: str) -> bool:
        return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def rpc(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in response:
            raise ChainError(f"{method} failed: {response['error']}")
        return response["result"]

    def rpc_many(self, method: str, params: list[list[Any]]) -> list[Any]:
        """`rpc` for each parameter list, in one JSON-RPC batch over HTTP (one call each in process)."""
        provider = self.w3.provider
        if not isinstance(provider, HTTPProvider) or len(params) < 2:
            return [self.rpc(method, *p) for p in params]
        responses = provider.make_batch_request([(RPCEndpoint(method), p) for p in params])
        if not isinstance(responses, list):
            raise ChainError(f"{method} failed: {responses.get('error')}")
        errors = [r["error"] for r in responses if "error" in r]
        if errors:
            raise ChainError(f"{method} failed: {errors[0]}")
        return [r["result"] for r in responses]

    def send(self, tx: TxParams, sender: LocalAccount | None = None, extra_gas: int = 0) -> TxReceipt:
        """Estimates, checks the gas cap, signs (with the relayer key unless another sender is
        given), broadcasts and waits for the receipt. `extra_gas` is added to the gas limit (budgets
        the estimate may not reflect, such as a receiving contract's allowance)."""
        sender = sender or self.relayer
        tx = {**tx, "from": sender.address, "chainId": self.chain_id}
        try:
            # Estimated without fee fields: some nodes check the sender can pay for the whole block's gas.
            estimate = self.w3.eth.estimate_gas(tx)
        except (ContractLogicError, ContractCustomError, TransactionFailed) as exc:
            raise ChainError(f"transaction would revert: {exc}", code="execution_reverted") from exc
        tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = self.fees()
        if estimate > self.network.tx_gas_cap:
            raise GasCapExceeded(
                f"transaction needs {estimate} gas, over the cap of {self.network.tx_gas_cap}",
                gas=estimate,
                cap=self.network.tx_gas_cap,
            )
        tx["gas"] = min(int(estimate * GAS_HEADROOM) + extra_gas, self.network.tx_gas_cap)
        try:
            nonces = self.nonces if sender.address == self.relayer.address else self.admin_nonces
            sent = nonces.broadcast(self, sender, tx)
            receipt = self.w3.eth.wait_for_transaction_receipt(sent, timeout=RECEIPT_TIMEOUT)
        except TimeExhausted as exc:
            raise ChainUnavailable(str(exc), code="receipt_timeout") from exc
        except OSError as exc:  # requests' connection errors and timeouts
            raise ChainUnavailable(f"node unreachable: {exc}") from exc
        except Web3Exception as exc:  # nonce races, underpriced replacements, rate limits: try again later
            raise ChainUnavailable(f"broadcast failed: {exc}") from exc
        if receipt["status"] != 1:
            raise ChainError(
                f"transaction {receipt['transactionHash'].to_0x_hex()} reverted", code="execution_reverted"
            )
        return receipt

    def call(
        self, contract: Contract, function: str, *args: Any, sender: LocalAccount | None = None
    ) -> TxReceipt:
        data = contract.encode_abi(function, args=list(args))
        return self.send({"to": contract.address, "data": HexStr(data)}, sender)

    def ensure_funded(self, address: str, minimum_wei: int) -> None:
        """Tops `address` up to twice `minimum_wei` from the relayer when it holds less than the minimum
        (tenant admin accounts pay for their own role and registry transactions)."""
        balance = self.w3.eth.get_balance(Web3.to_checksum_address(address))
        if balance < minimum_wei:
            self.send({"to": Web3.to_checksum_address(address), "value": Wei(2 * minimum_wei - balance)})

    def deploy(self, name: str, *args: Any) -> tuple[ChecksumAddress, TxReceipt]:
        """Deploys the built contract `name` with constructor arguments `args`."""
        built = artifact(name)
        inputs: list[dict[str, Any]] = next(
            (e["inputs"] for e in built["abi"] if e["type"] == "constructor"), []
        )
        encoded = self.w3.codec.encode([i["type"] for i in inputs], list(args)).hex()
        receipt = self.send({"data": HexStr(built["bytecode"] + encoded)})
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploying {name} created no contract")
        return address, receipt

    def fees(self) -> tuple[Wei, Wei]:
        """(maxFeePerGas, maxPriorityFeePerGas): twice the base fee plus the tip, within the network's cap."""
        if isinstance(self.w3.provider, HTTPProvider):  # the raw block: web3's formatters cost more
            base_fee = int(self.rpc("eth_getBlockByNumber", "latest", False).get("baseFeePerGas", "0x0"), 16)
        else:  # the embedded EVM answers in its own shape
            base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        tip = Web3.to_wei(self.network.max_priority_fee_gwei or 1, "gwei")
        max_fee = 2 * base_fee + tip
        if self.network.max_fee_gwei is not None:
            max_fee = min(max_fee, Web3.to_wei(self.network.max_fee_gwei, "gwei"))
        return Wei(max(max_fee, tip)), tip


class EmbeddedProvider(EthereumTesterProvider):
    """The in-process EVM, one request at a time: py-evm is not thread-safe, and under `pers up` the API,
    the worker and the indexer share it (a block read while another thread mines it came back with a
    hash that then changed, which the indexer took for a reorg)."""

    def __init__(self, tester: EthereumTester) -> None:
        super().__init__(tester)
        self._serial = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._serial:
            return super().make_request(method, params)


class FastHTTPProvider(HTTPProvider):
    """web3's HTTP provider, its answers parsed by orjson: a receipt carrying a thousand operations'
    logs (≈ 0.4 MB of JSON) through the standard library's json was 10% of the worker's CPU."""

    @staticmethod
    def decode_rpc_response(raw_response: bytes) -> RPCResponse:
        return orjson.loads(raw_response)  # type: ignore[no-any-return]


def connect(settings: Settings, network_name: str | None = None, rpc_url: str | None = None) -> Chain:
    """Connects to a configured network by name; `rpc_url` overrides the configured URL."""
    network = settings.chain_config().network(network_name or settings.network)
    relayer = _relayer(settings, network)
    url = resolve_rpc_url(network, rpc_url or settings.rpc_url)
    if url is None:
        w3 = Web3(
            EmbeddedProvider(EthereumTester(PyEVMBackend(mnemonic=DEV_MNEMONIC, hd_path="m/44'/60'/0'/0")))
        )
    else:
        w3 = Web3(FastHTTPProvider(url, request_kwargs={"timeout": 30}, session=_http_session()))
        try:
            chain_id = w3.eth.chain_id
        except Exception as exc:  # any transport failure means the node is unreachable
            raise ChainUnavailable(
                f"cannot reach {network.name} at {url}: {exc}", code="rpc_unreachable"
            ) from exc
        if chain_id != network.chain_id:
            raise ConfigError(f"{url} serves chain {chain_id}, network {network.name} is {network.chain_id}")
    return Chain(w3=w3, network=network, relayer=relayer)


def _http_session() -> requests.Session:
    """One HTTP session for every thread. Without proxies in the environment it does not read the
    environment at each request (requests looks up proxies and .netrc per call: a quarter of the
    pump's cost of a JSON-RPC call)."""
    session = requests.Session()
    session.trust_env = bool(urllib.request.getproxies())
    return session


def _relayer(settings: Settings, network: NetworkConfig) -> LocalAccount:
    if settings.relayer_key is not None:
        account: LocalAccount = Account.from_key(settings.relayer_key.get_secret_value())
        return account
    if network.dev:
        return dev_account(0)
    raise ConfigError(f"network {network.name} needs PERS_RELAYER_KEY", code="missing_relayer_key")
