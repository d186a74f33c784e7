"""Webhooks end to end, on both stacks: subscriptions, a real receiver on a loopback port getting signed
deliveries, retries after 500s, the delivery log, live-environment refusals and `emit` from a unit of work."""

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery import Celery
from eth_account import Account
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit import outbox
from backend.kit.db import make_engine, make_sessionmaker
from backend.webhooks.service import MAX_WEBHOOKS, emit
from tests.e2e.test_relay import mint, open_shop
from tests.e2e.test_relay import settled as op_settled
from tests.platform import PASSWORD, Platform, TenantSession, bearer, create_tenant, wait_for

Json = dict[str, Any]


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    def json(self) -> Json:
        found: Json = json.loads(self.body)
        return found


@dataclass
class Receiver:
    """An HTTP server on a free loopback port that records each POST and answers the next of
    `statuses` (200 once they run out)."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                state.received.append(Received(body, {k.lower(): v for k, v in self.headers.items()}))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"no" if status >= 300 else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def verify(secret: str, received: Received) -> None:
    """What a receiver does (docs/operations.md): recompute the HMAC over `<t>.<body>`."""
    parts = dict(item.split("=", 1) for item in received.headers["x-pers-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + received.body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())


def code(response: Any) -> str:
    found: str = response.json()["error"]["code"]
    return found


def subscribe(platform: Platform, tenant: TenantSession, url: str, *types: str) -> Json:
    body = {"url": url, "eventTypes": list(types or ["transaction.mined"]), "description": "till"}
    created = platform.client.post("/v1/webhooks", json=body, headers=tenant.admin_headers)
    assert created.status_code == 201, created.text
    found: Json = created.json()
    return found


def deliveries(platform: Platform, tenant: TenantSession, webhook_id: str) -> list[Json]:
    listed = platform.client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=tenant.admin_headers)
    assert listed.status_code == 200, listed.text
    found: list[Json] = listed.json()["data"]
    return found


def settled(platform: Platform, tenant: TenantSession, webhook_id: str) -> list[Json]:
    """The delivery log once nothing in it is pending (a bounded wait, not a timing assertion)."""
    result: list[Json] = wait_for(
        lambda: deliveries(platform, tenant, webhook_id),
        lambda log: log and all(d["status"] != "pending" for d in log),
        "the webhook delivery",
    )
    return result


def test_subscriptions_are_created_listed_and_deleted_and_bad_input_is_refused(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    admin = tenant.admin_headers
    created = subscribe(
        platform, tenant, "https://hooks.acme.example/pers", "transaction.mined", "claim.completed"
    )
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["eventTypes"] == ["claim.completed", "transaction.mined"]
    assert (created["environment"], created["description"]) == ("test", "till")

    # The secret is shown once: never in the list, the log or a test delivery's answer.
    listed = client.get("/v1/webhooks", headers=admin)
    assert listed.status_code == 200 and secret not in listed.text and "secret" not in listed.text
    assert [w["id"] for w in listed.json()["data"]] == [created["id"]]
    tested = client.post(f"/v1/webhooks/{created['id']}/test", headers=admin)
    assert tested.status_code == 202 and secret not in tested.text

    bad: list[tuple[Json, str]] = [
        ({"url": "https://a.example", "eventTypes": ["transaction.minted"]}, "unknown_event_type"),
        ({"url": "https://a.example", "eventTypes": []}, "invalid_value"),
        ({"url": "https://a.example"}, "missing_field"),
        ({"url": "ftp://a.example/x", "eventTypes": ["transaction.mined"]}, "invalid_webhook_url"),
        ({"url": "not a url", "eventTypes": ["transaction.mined"]}, "invalid_webhook_url"),
        ({"url": "https://user:pw@a.example/", "eventTypes": ["transaction.mined"]}, "invalid_webhook_url"),
        ({"url": "https://a.example:99999/", "eventTypes": ["transaction.mined"]}, "invalid_webhook_url"),
        ({"url": "https://a.example", "eventTypes": ["transaction.mined"], "secret": "x"}, "unknown_field"),
        ({"url": "https://a.example/" + "x" * 2048, "eventTypes": ["transaction.mined"]}, "invalid_value"),
    ]
    for body, expected in bad:
        refused = client.post("/v1/webhooks", json=body, headers=admin)
        assert (refused.status_code, code(refused)) == (422, expected), (body, refused.text)
    business = client.post("/v1/businesses", json={"name": "Shop"}, headers=admin).json()
    key = client.post(f"/v1/businesses/{business['id']}/api-keys", json={}, headers=admin).json()["key"]
    as_business = client.post(
        "/v1/webhooks",
        json={"url": "https://a.example", "eventTypes": ["transaction.mined"]},
        headers={"X-API-Key": key},
    )
    assert (as_business.status_code, code(as_business)) == (403, "forbidden")
    # Nothing half-done: the refusals left the one subscription there was.
    assert client.get("/v1/webhooks", headers=admin).json()["meta"]["total"] == 1

    for _ in range(MAX_WEBHOOKS - 1):
        subscribe(platform, tenant, "https://hooks.acme.example/more")
    over = client.post(
        "/v1/webhooks", json={"url": "https://a.example", "eventTypes": ["claim.failed"]}, headers=admin
    )
    assert (over.status_code, code(over)) == (409, "webhook_limit_reached")
    for webhook in client.get("/v1/webhooks", headers=admin, params={"limit": 200}).json()["data"][1:]:
        assert client.delete(f"/v1/webhooks/{webhook['id']}", headers=admin).status_code == 204

    deleted = client.delete(f"/v1/webhooks/{created['id']}", headers=admin)
    assert deleted.status_code == 204
    assert client.get("/v1/webhooks", headers=admin).json()["data"] == []
    for method, path in (
        ("DELETE", f"/v1/webhooks/{created['id']}"),
        ("GET", f"/v1/webhooks/{created['id']}/deliveries"),
        ("POST", f"/v1/webhooks/{created['id']}/test"),
        ("DELETE", "/v1/webhooks/not-a-uuid"),
    ):
        gone = client.request(method, path, headers=admin)
        assert (gone.status_code, code(gone)) == (404, "not_found"), (method, path)


def test_a_test_delivery_arrives_signed(platform: Platform, receiver: Receiver) -> None:
    tenant = create_tenant(platform)
    webhook = subscribe(platform, tenant, receiver.url)
    sent = platform.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=tenant.admin_headers)
    assert sent.status_code == 202, sent.text
    assert (sent.json()["status"], sent.json()["eventType"]) == ("pending", "webhook.test")

    [delivery] = settled(platform, tenant, webhook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["lastStatusCode"]) == ("delivered", 1, 200)
    assert delivery["deliveredAt"] and delivery["nextAttemptAt"] is None and delivery["lastError"] is None
    [received] = receiver.received
    verify(webhook["secret"], received)
    body = received.json()
    assert set(body) == {"id", "type", "createdAt", "data"}
    assert (body["id"], body["type"], body["data"]) == (
        delivery["eventId"],
        "webhook.test",
        {"webhookId": webhook["id"]},
    )
    assert received.headers["content-type"] == "application/json"
    # A signature made with another secret, or over another body, does not verify.
    with pytest.raises(AssertionError):
        verify("whsec_" + "x" * 43, received)
    with pytest.raises(AssertionError):
        verify(
            webhook["secret"],
            Received(received.body.replace(b"webhook.test", b"webhook.tost"), received.headers),
        )


def test_a_failing_receiver_is_retried_with_backoff_and_logged(
    platform: Platform, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]  # then 200
    tenant = create_tenant(platform)
    webhook = subscribe(platform, tenant, receiver.url)
    platform.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=tenant.admin_headers)

    [delivery] = settled(platform, tenant, webhook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["lastStatusCode"]) == ("delivered", 3, 200)
    assert [a["statusCode"] for a in delivery["history"]] == [500, 503, 200]
    assert delivery["history"][0]["error"] == "HTTP 500"  # the answer's body ("no") is not read
    times = [a["at"] for a in delivery["history"]]
    assert times == sorted(times)
    # The same event, with the same id and body, signed afresh at each attempt.
    assert len(receiver.received) == 3
    assert {r.body for r in receiver.received} == {receiver.received[0].body}
    assert receiver.received[0].json()["id"] == delivery["eventId"]
    for received in receiver.received:
        verify(webhook["secret"], received)


def test_a_receiver_that_never_answers_is_logged_with_its_error(platform: Platform) -> None:
    tenant = create_tenant(platform)
    webhook = subscribe(platform, tenant, "http://127.0.0.1:9/closed")  # the discard port: refused
    platform.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=tenant.admin_headers)
    log = wait_for(
        lambda: deliveries(platform, tenant, webhook["id"]),
        lambda found: found and found[0]["attempts"] >= 2,
        "two failed attempts",
    )
    assert log[0]["status"] == "pending" and log[0]["lastStatusCode"] is None
    assert "ConnectError" in log[0]["lastError"] and log[0]["nextAttemptAt"]


def live_admin(platform: Platform, tenant: TenantSession) -> dict[str, str]:
    signed_in = platform.client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": tenant.raw["admin"]["email"], "password": PASSWORD},
        headers={"X-Project-Key": tenant.live_project_key},
    )
    assert signed_in.status_code == 200, signed_in.text
    return bearer(signed_in.json()["accessToken"])


def test_live_receivers_must_be_public_https(platform: Platform, receiver: Receiver) -> None:
    client, tenant = platform.client, create_tenant(platform)
    live = live_admin(platform, tenant)
    port = receiver.url.split(":")[2].split("/")[0]
    refused = {
        receiver.url: "webhook_url_not_https",
        "http://93.184.216.34/hooks": "webhook_url_not_https",
        f"https://127.0.0.1:{port}/hooks": "webhook_url_not_public",
        f"https://localhost:{port}/hooks": "webhook_url_not_public",
        "https://10.1.2.3/hooks": "webhook_url_not_public",
        "https://192.168.0.10/hooks": "webhook_url_not_public",
        "https://169.254.169.254/latest/meta-data": "webhook_url_not_public",
        "https://[::1]/hooks": "webhook_url_not_public",
        "https://[::ffff:127.0.0.1]/hooks": "webhook_url_not_public",
        "https://0.0.0.0/hooks": "webhook_url_not_public",
    }
    for url, expected in refused.items():
        answer = client.post(
            "/v1/webhooks", json={"url": url, "eventTypes": ["transaction.mined"]}, headers=live
        )
        assert (answer.status_code, code(answer)) == (422, expected), (url, answer.text)
    assert client.get("/v1/webhooks", headers=live).json()["data"] == []
    accepted = client.post(
        "/v1/webhooks",
        json={"url": "https://93.184.216.34/hooks", "eventTypes": ["transaction.mined"]},
        headers=live,
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["environment"] == "live"
    # Environments are apart: the test session sees none of the live subscriptions.
    assert client.get("/v1/webhooks", headers=tenant.admin_headers).json()["data"] == []
    gone = client.get(f"/v1/webhooks/{accepted.json()['id']}/deliveries", headers=tenant.admin_headers)
    assert gone.status_code == 404
    assert receiver.received == []


def test_emit_inside_a_unit_of_work_produces_a_signed_delivery(
    platform: Platform, receiver: Receiver
) -> None:
    tenant = create_tenant(platform)
    mined = subscribe(platform, tenant, receiver.url, "transaction.mined")
    other = subscribe(platform, tenant, receiver.url, "transaction.failed")
    scope = TenantScope(uuid.UUID(tenant.id), "test")
    data = {"id": str(uuid.uuid4()), "status": "mined", "amount": "10"}
    with database(platform) as session:
        with session.begin():
            emit(session, scope, "transaction.mined", data)
            emit(session, scope, "transaction.submitted", data)  # nobody listens: nothing is written
        jobs = outbox.on_commit(session)
        session.begin()
        emit(session, scope, "transaction.mined", {**data, "status": "rolled back"})
        session.rollback()  # a cause rolled back sends nothing
        assert outbox.on_commit(session) == []
    assert len(jobs) == 1  # one delivery: to the one subscription that wants the event
    send(platform, jobs)

    [delivery] = settled(platform, tenant, mined["id"])
    assert (delivery["status"], delivery["eventType"]) == ("delivered", "transaction.mined")
    assert deliveries(platform, tenant, other["id"]) == []
    [received] = receiver.received
    verify(mined["secret"], received)
    assert received.json()["data"] == data and received.json()["type"] == "transaction.mined"


def database(platform: Platform) -> Session:
    """A session on the stack's own database, as the relay's unit of work has."""
    if platform.env is None:
        from backend.runtime import current

        return current().sessions()
    return make_sessionmaker(make_engine(platform.env["PERS_DATABASE_URL"]))()


def send(platform: Platform, job_ids: list[uuid.UUID]) -> None:
    """Dispatches the committed jobs, as the caller's unit of work does after commit."""
    if platform.env is None:
        from backend.worker import dispatch

        for job_id in job_ids:
            dispatch(job_id)
        return
    app = Celery("test-dispatch", broker=platform.env["PERS_BROKER_URL"])
    with app.connection_for_write() as connection:
        for job_id in job_ids:
            app.send_task(
                "pers.run_job", args=[str(job_id)], queue=platform.env["PERS_QUEUE"], connection=connection
            )


def test_a_relayed_mint_reaches_its_subscribers_as_submitted_and_mined(
    platform: Platform, receiver: Receiver
) -> None:
    shop = open_shop(platform, "Hooked")
    hook = subscribe(platform, shop.tenant, receiver.url, "transaction.submitted", "transaction.mined")
    created = mint(platform, shop, Account.create().address, "7")
    done = op_settled(platform, shop.key, created["id"])
    assert done["status"] == "mined", done
    log = wait_for(
        lambda: settled(platform, shop.tenant, hook["id"]),
        lambda found: len(found) == 2,
        "both transaction events",
    )
    assert {d["status"] for d in log} == {"delivered"}, log
    events = {r.json()["type"]: r.json() for r in receiver.received}
    assert set(events) == {"transaction.submitted", "transaction.mined"}
    for received in receiver.received:
        verify(hook["secret"], received)
    assert events["transaction.mined"]["data"]["id"] == created["id"]
    assert events["transaction.mined"]["data"]["txHash"] == done["txHash"]
    assert events["transaction.submitted"]["data"]["status"] == "submitted"
