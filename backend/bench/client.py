"""A lean HTTP/1.1 load generator for the benches: keep-alive connections over asyncio streams,
requests encoded before the clock starts. It shares the 2 cores with what it measures, and httpx spent
more CPU per request than the API's whole accept path. Still honest: every answer is read in full,
its status checked and its operation ids collected."""

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from backend.kit.errors import PersError


def encode(host: str, port: int, path: str, headers: Mapping[str, str], body: Any) -> bytes:
    """One `POST` with a JSON body, as sent on the wire."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + payload


def encode_get(host: str, port: int, path: str, headers: Mapping[str, str]) -> bytes:
    """One `GET`, as sent on the wire."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{n}: {v}" for n, v in headers.items())]
    return "\r\n".join(lines).encode() + b"\r\n\r\n"


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes, bool]:
    """Sends one request; its answer's status, body, and whether the server closes the connection."""
    writer.write(request)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        closed = "bench: the API closed the connection without answering"
        raise PersError(closed, code="bench_failed") from exc
    status_line, *header_lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    if b"content-length" not in headers:  # uvicorn sends a length with every JSON answer
        raise PersError("bench: an answer without Content-Length", code="bench_failed")
    body = await reader.readexactly(int(headers[b"content-length"]))
    return int(status_line.split()[1]), body, headers.get(b"connection") == b"close"


async def post_all(host: str, port: int, requests: list[bytes], clients: int) -> dict[str, float]:
    """Sends every request (from `encode`) over `clients` concurrent connections; the send time of each
    operation id the answers carry. Any answer but 202 ends the run with an error."""
    sent: dict[str, float] = {}
    queue = list(reversed(requests))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while queue:
                started = time.time()
                status, body, close = await _exchange(reader, writer, queue.pop())
                if status != 202:
                    raise PersError(f"bench: answered {status}: {body[:200]!r}", code="bench_failed")
                found = json.loads(body)
                for item in found.get("data", [found]):  # a batch's items, or the one record
                    sent[item.get("transaction", item)["id"]] = started
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return sent


async def get_all(host: str, port: int, requests: list[bytes], clients: int) -> list[float]:
    """Sends every request (from `encode_get`) over `clients` concurrent connections; each one's
    latency in seconds. Any answer but 200 ends the run with an error."""
    latencies: list[float] = []
    queue = list(reversed(requests))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while queue:
                started = time.perf_counter()
                status, body, close = await _exchange(reader, writer, queue.pop())
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise PersError(f"bench: answered {status}: {body[:200]!r}", code="bench_failed")
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies
