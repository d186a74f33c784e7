"""Webhook pieces without a stack: the backoff schedule, the signature, and where receivers may be."""

import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest

from backend.webhooks import receivers, sender
from backend.webhooks.tasks import MAX_DELAY, backoff, next_attempt

BASE = timedelta(seconds=10)


def test_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    rng = random.Random(7)
    for attempts in range(1, 40):
        full = min(BASE * 2 ** (attempts - 1), MAX_DELAY)
        delay = backoff(attempts, BASE, rng)
        assert full / 2 <= delay <= full
    assert backoff(3, BASE, random.Random(1)) != backoff(3, BASE, random.Random(2))  # jittered


def test_retries_stop_at_the_end_of_the_window() -> None:
    first = datetime(2026, 1, 1, tzinfo=UTC)
    window = timedelta(hours=24)
    at = next_attempt(1, first, first, BASE, window)
    assert at is not None and first + BASE / 2 <= at <= first + BASE
    assert next_attempt(30, first, first + timedelta(hours=23, minutes=59), BASE, window) is None
    # A day of failures at most an hour apart: a few dozen attempts, then `failed`.
    now, attempts = first, 0
    while (following := next_attempt(attempts + 1, first, now, BASE, window)) is not None:
        now, attempts = following, attempts + 1
    assert 24 <= attempts <= 60 and now <= first + window


def test_the_signature_is_an_hmac_of_the_timestamp_and_body() -> None:
    body = sender.body("e1", "transaction.mined", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), {"amount": "1"})
    assert body == (
        b'{"createdAt":"2026-01-02T03:04:05.000Z","data":{"amount":"1"},"id":"e1","type":"transaction.mined"}'
    )
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sender.signature("whsec_k", 1700000000, body) == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://8.8.8.8/x", "webhook_url_not_https"),
        ("https://127.0.0.1/x", "webhook_url_not_public"),
        ("https://localhost:8443/x", "webhook_url_not_public"),
        ("https://172.16.0.1/x", "webhook_url_not_public"),
        ("https://100.64.0.1/x", "webhook_url_not_public"),  # carrier-grade NAT
        ("https://[fe80::1]/x", "webhook_url_not_public"),
        ("https://[fd00::1]/x", "webhook_url_not_public"),
        ("https://[::ffff:10.0.0.1]/x", "webhook_url_not_public"),
        ("https://224.0.0.1/x", "webhook_url_not_public"),
        ("https://pers-no-such-host.invalid/x", "webhook_url_unresolvable"),
        ("javascript:alert(1)", "invalid_webhook_url"),
        ("https://u:p@8.8.8.8/x", "invalid_webhook_url"),
    ],
)
def test_live_refuses_what_is_not_a_public_https_receiver(url: str, code: str) -> None:
    with pytest.raises(receivers.ReceiverRefused) as refused:
        receivers.check(url, "live")
    assert refused.value.code == code


def test_live_pins_the_checked_address_and_test_takes_loopback() -> None:
    pinned = receivers.check("https://8.8.8.8:8443/hooks?x=1", "live")
    assert (pinned.url, pinned.netloc, pinned.server_name, pinned.pinned) == (
        "https://8.8.8.8:8443/hooks?x=1",
        "8.8.8.8:8443",
        "8.8.8.8",
        True,
    )
    local = receivers.check("http://localhost:9/hooks", "test")
    assert (local.url, local.pinned) == ("http://localhost:9/hooks", False)


def test_a_delivery_to_a_name_resolving_to_loopback_is_refused_before_connecting() -> None:
    """The delivery-time check: a live receiver whose name now resolves inside is not contacted."""
    outcome = sender.post("https://localhost:9/hooks", "live", "whsec_k", b"{}")
    assert outcome.status_code is None and not outcome.ok
    assert outcome.error is not None and "public addresses" in outcome.error
