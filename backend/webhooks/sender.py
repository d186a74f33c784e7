"""One delivery attempt: the signed body, POSTed once with short timeouts and no redirects followed.
Only the answer's status counts; its body is never read, so a receiver URL pointing inside the network
(allowed in `test`) cannot be used to read what is there through the delivery log."""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from backend.webhooks import receivers

SIGNATURE_HEADER = "X-Pers-Signature"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def body(event_id: str, event_type: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    created = created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    payload = {"id": event_id, "type": event_type, "createdAt": created, "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, payload: bytes) -> str:
    """`t=<unix>,v1=<hex hmac_sha256(secret, "<t>.<body>")>`; the secret is the `whsec_…` text itself."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def post(url: str, environment: str, secret: str, payload: bytes) -> Outcome:
    try:
        target = receivers.check(url, environment)  # again now: the name may resolve elsewhere today
    except receivers.ReceiverRefused as refused:
        return Outcome(None, refused.message)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PERS-Webhooks/1",
        "Host": target.netloc,
        SIGNATURE_HEADER: signature(secret, int(time.time()), payload),
    }
    extensions = {"sni_hostname": target.server_name} if target.pinned else {}
    try:
        with (
            httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST", target.url, content=payload, headers=headers, extensions=extensions
            ) as answer,
        ):
            return Outcome(answer.status_code, None if answer.is_success else f"HTTP {answer.status_code}")
    except httpx.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:300])
