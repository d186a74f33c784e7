"""Raw JSON-RPC for the follower: one persistent HTTP connection pool, JSON answers as they come (hex
strings), batches for headers. The embedded EVM answers the same calls through web3, in the same shape.

Errors fall in two kinds: the node answered with an error (`RpcError`: a range too large, too many
results, a bad request) and the node did not answer usefully (`NodeUnavailable`: refused, timed out,
a 5xx, a malformed answer). The follower shrinks its ranges on the first and backs off on both."""

from typing import Any, Protocol

import httpx
import orjson
from web3 import Web3


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class NodeUnavailable(Exception):
    pass


class Rpc(Protocol):
    def call(self, method: str, params: list[Any]) -> Any: ...

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]: ...


def _result(answer: Any) -> Any:
    if not isinstance(answer, dict):
        raise NodeUnavailable(f"malformed answer: {str(answer)[:200]}")
    if "error" in answer:
        error = answer["error"] or {}
        raise RpcError(int(error.get("code", 0)), str(error.get("message", "")))
    if "result" not in answer:
        raise NodeUnavailable(f"malformed answer: {str(answer)[:200]}")
    return answer["result"]


class HttpRpc:
    """A JSON-RPC node over HTTP with keep-alive connections (thread-safe: one client, several threads)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.client = httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_keepalive_connections=8),
            headers={"content-type": "application/json"},
        )

    def _post(self, body: Any) -> Any:
        try:
            response = self.client.post(self.url, content=orjson.dumps(body))
        except httpx.HTTPError as exc:  # refused, reset, timed out
            raise NodeUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise NodeUnavailable(f"HTTP {response.status_code}")
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise NodeUnavailable(f"HTTP {response.status_code}, not JSON") from exc

    def call(self, method: str, params: list[Any]) -> Any:
        return _result(self._post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        if not calls:
            return []
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        answers = self._post(body)
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise NodeUnavailable("batch answer does not match the request")
        by_id = {answer.get("id"): answer for answer in answers if isinstance(answer, dict)}
        return [_result(by_id.get(i)) for i in range(len(calls))]

    def close(self) -> None:
        self.client.close()


def _hex(value: Any) -> str:
    return (
        value.to_0x_hex() if hasattr(value, "to_0x_hex") else hex(value) if isinstance(value, int) else value
    )


class EmbeddedRpc:
    """The in-process EVM (`pers up`): the follower's few calls through web3, answered as a node would."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    def call(self, method: str, params: list[Any]) -> Any:
        if method == "eth_blockNumber":
            return hex(self.w3.eth.block_number)
        if method == "eth_chainId":
            return hex(self.w3.eth.chain_id)
        if method == "eth_getBlockByNumber":
            block = self.w3.eth.get_block(params[0])
            return {
                "number": hex(block["number"]),
                "hash": _hex(block["hash"]),
                "parentHash": _hex(block["parentHash"]),
            }
        if method == "eth_getLogs":
            query = {**params[0], "address": [Web3.to_checksum_address(a) for a in params[0]["address"]]}
            logs = self.w3.eth.get_logs(query)  # type: ignore[arg-type]
            return [
                {
                    "address": entry["address"].lower(),
                    "topics": [_hex(topic) for topic in entry["topics"]],
                    "data": _hex(entry["data"]),
                    "blockNumber": hex(entry["blockNumber"]),
                    "blockHash": _hex(entry["blockHash"]),
                    "transactionHash": _hex(entry["transactionHash"]),
                    "logIndex": hex(entry["logIndex"]),
                }
                for entry in logs
            ]
        if method == "eth_call":
            call = {**params[0], "to": Web3.to_checksum_address(params[0]["to"])}
            return _hex(self.w3.eth.call(call, params[1]))  # type: ignore[arg-type]
        raise RpcError(-32601, f"{method} is not served by the embedded EVM adapter")

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        return [self.call(method, params) for method, params in calls]
