"""The relay bench's load generator reads every answer: ids collected, any status but 202 an error."""

import asyncio
import json

import pytest

from backend.bench.client import encode, post_all
from backend.kit.errors import PersError


async def _serve(answers: list[tuple[int, bytes, bool]]) -> tuple[asyncio.Server, list[bytes]]:
    """A server that answers each request with the next (status, body, close) and records the bodies."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Length")).split(b":")[
                    1
                ]
            )
            received.append(await reader.readexactly(length))
            status, body, close = answers.pop(0)
            extra = b"connection: close\r\n" if close else b""
            writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n" % (status, len(body), extra) + body)
            await writer.drain()
            if close:
                break
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), received


def test_every_operation_id_is_collected_across_reconnections() -> None:
    async def run() -> tuple[dict[str, float], list[bytes]]:
        answers = [
            (202, json.dumps({"id": "a"}).encode(), True),  # the server closes: the client reconnects
            (
                202,
                json.dumps({"data": [{"transaction": {"id": "b"}}, {"transaction": {"id": "c"}}]}).encode(),
                False,
            ),
        ]
        server, received = await _serve(answers)
        port = server.sockets[0].getsockname()[1]
        requests = [
            encode("127.0.0.1", port, "/v1/transactions", {"X-API-Key": "k"}, {"n": i}) for i in range(2)
        ]
        async with server:
            return await post_all("127.0.0.1", port, requests, clients=1), received

    sent, received = asyncio.run(run())
    assert sorted(sent) == ["a", "b", "c"]
    assert [json.loads(body) for body in received] == [{"n": 0}, {"n": 1}]


def test_an_answer_other_than_202_ends_the_run() -> None:
    async def run() -> None:
        server, _ = await _serve([(429, b'{"error": {}}', False)])
        port = server.sockets[0].getsockname()[1]
        async with server:
            await post_all("127.0.0.1", port, [encode("127.0.0.1", port, "/x", {}, {})], clients=1)

    with pytest.raises(PersError, match="answered 429"):
        asyncio.run(run())
