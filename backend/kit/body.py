"""Request bodies are bounded before anything reads them: the size first (from `Content-Length`, then
counted as the body arrives, so a chunked or lying body is cut off at the limit too), then the JSON
nesting depth. Only then does the request reach authentication and parsing: before this, a 30 MB body
was walked in Python on the event loop ahead of authentication, stalling every other client."""

import json
from collections.abc import Awaitable, Callable, MutableMapping
from itertools import accumulate, count
from operator import sub
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Deeper bodies are refused before they are parsed: the EVM libraries raise the interpreter's recursion
# limit, so the JSON parser would recurse until the process crashes instead of raising RecursionError.
MAX_JSON_DEPTH = 32
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_CHUNK = 65536


def nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether a JSON text nests arrays and objects more than `limit` levels (brackets in strings aside).

    Runs at C speed rather than as a Python loop over every byte. Strings go first: escaped
    backslashes, then escaped quotes, then every other piece between quotes. With the brackets left
    mapped to 2 (open) and 0 (close), the depth after the k-th bracket is their running sum minus k;
    chunk by chunk, so a deep body is found without walking all of it."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[::2]).translate(_DEPTH, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = brackets[start : start + _CHUNK]
        depths = list(map(sub, accumulate(chunk, initial=depth), count()))
        if max(depths) > limit:
            return True
        depth = depths[-1]
    return False


def _error(status: int, code: str, message: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class BodyLimit:
    """ASGI middleware: reads the whole body (at most `max_bytes`), checks it, then hands it on."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body exceeds {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, 413, "payload_too_large", too_large)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if nests_deeper_than(body, MAX_JSON_DEPTH):
            too_deep = f"the body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep"
            await self._refuse(send, 400, "malformed_json", too_deep)
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str) -> None:
        start, body = _error(status, code, message)
        if status == 413:  # the rest of the body is never read: the connection cannot be reused
            start["headers"].append((b"connection", b"close"))
        await send(start)
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then waits on the client (for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
