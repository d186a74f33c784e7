"""Sign-In with Ethereum (EIP-4361): the exact text layout, round trips, and every refusal's code."""

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak

from backend.auth import siwe
from backend.auth.siwe import SiweError, SiweMessage, format_message, parse, recover_address, verify
from backend.kit.errors import PersError

KEY = keccak(text="siwe-unit-user")
USER = Account.from_key(KEY).address
OTHER_KEY = keccak(text="siwe-unit-intruder")
DOMAIN = "rewards.example"
URI = "https://rewards.example/login"
CHAIN = 31337
ISSUED = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
NOW = ISSUED + timedelta(seconds=30)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def text(
    *,
    header: str = f"{DOMAIN} wants you to sign in with your Ethereum account:",
    address: str = USER,
    statement: str | None = "Sign in to Rewards.",
    fields: tuple[str, ...] = (),
) -> str:
    """A message written out by hand in the reference layout (not through format_message)."""
    body = fields or (
        f"URI: {URI}",
        "Version: 1",
        f"Chain ID: {CHAIN}",
        "Nonce: q7Rt2mXz9Kp4",
        "Issued At: 2025-03-14T09:26:53.000Z",
    )
    middle = f"{statement}\n\n" if statement is not None else "\n"
    return f"{header}\n{address}\n\n{middle}" + "\n".join(body)


BASE = text()
REQUIRED = (
    f"URI: {URI}",
    "Version: 1",
    f"Chain ID: {CHAIN}",
    "Nonce: q7Rt2mXz9Kp4",
    "Issued At: 2025-03-14T09:26:53.000Z",
)
OPTIONAL = (
    "Expiration Time: 2025-03-14T09:36:53.000Z",
    "Not Before: 2025-03-14T09:25:00Z",
    "Request ID: req-42",
    "Resources:",
    "- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
    "- https://rewards.example/terms.json",
)
FULL = text(fields=REQUIRED + OPTIONAL)


def sign(message: str, key: bytes = KEY) -> bytes:
    return bytes(Account.sign_message(encode_defunct(text=message), key).signature)


def message(**changes: object) -> SiweMessage:
    fields: dict[str, object] = {
        "domain": DOMAIN,
        "address": USER,
        "statement": "Sign in to Rewards.",
        "uri": URI,
        "version": "1",
        "chain_id": CHAIN,
        "nonce": "q7Rt2mXz9Kp4",
        "issued_at": ISSUED,
    }
    fields.update(changes)
    return SiweMessage(**fields)  # type: ignore[arg-type]


def malformed(source: str) -> SiweError:
    with pytest.raises(SiweError) as caught:
        parse(source)
    assert caught.value.code == "siwe_malformed"
    assert caught.value.status == 400
    return caught.value


# --- the exact layout -------------------------------------------------------------------------


def test_statement_present_is_framed_by_one_blank_line_each_side() -> None:
    expected = (
        "rewards.example wants you to sign in with your Ethereum account:\n"
        f"{USER}\n"
        "\n"
        "Sign in to Rewards.\n"
        "\n"
        f"URI: {URI}\n"
        "Version: 1\n"
        f"Chain ID: {CHAIN}\n"
        "Nonce: q7Rt2mXz9Kp4\n"
        "Issued At: 2025-03-14T09:26:53.000Z"
    )
    assert expected == BASE
    parsed = parse(BASE)
    assert parsed.statement == "Sign in to Rewards."
    assert format_message(parsed) == BASE


def test_statement_absent_leaves_two_blank_lines_and_no_statement_line() -> None:
    source = text(statement=None)
    assert f"{USER}\n\n\nURI: {URI}\n" in source
    parsed = parse(source)
    assert parsed.statement is None
    assert format_message(parsed) == source
    assert format_message(dataclasses.replace(parsed, statement="Hi")) == text(statement="Hi")
    assert f"{USER}\n\n\nURI: " in format_message(message(statement=None))


def test_no_trailing_newline_after_the_last_field() -> None:
    assert not format_message(parse(FULL)).endswith("\n")
    malformed(BASE + "\n")
    malformed(FULL + "\n")


def test_every_field_parses() -> None:
    parsed = parse(FULL)
    assert parsed == SiweMessage(
        domain=DOMAIN,
        address=USER,
        statement="Sign in to Rewards.",
        uri=URI,
        version="1",
        chain_id=CHAIN,
        nonce="q7Rt2mXz9Kp4",
        issued_at=ISSUED,
        expiration_time=ISSUED + timedelta(minutes=10),
        not_before=datetime(2025, 3, 14, 9, 25, tzinfo=UTC),
        request_id="req-42",
        resources=(
            "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
            "https://rewards.example/terms.json",
        ),
        scheme=None,
    )
    assert parsed.issued_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(BASE, id="statement"),
        pytest.param(text(statement=None), id="no-statement"),
        pytest.param(FULL, id="all-optional-fields"),
        pytest.param(text(statement=None, fields=REQUIRED + OPTIONAL), id="all-optional-no-statement"),
        pytest.param(text(fields=(*REQUIRED, OPTIONAL[0])), id="expiration-only"),
        pytest.param(text(fields=(*REQUIRED, OPTIONAL[1])), id="not-before-only"),
        pytest.param(text(fields=(*REQUIRED, OPTIONAL[2])), id="request-id-only"),
        pytest.param(text(fields=(*REQUIRED, "Request ID: ")), id="empty-request-id"),
        pytest.param(text(fields=(*REQUIRED, *OPTIONAL[3:])), id="resources-only"),
        pytest.param(
            text(header="https://rewards.example wants you to sign in with your Ethereum account:"),
            id="scheme",
        ),
        pytest.param(
            text(header="localhost:8443 wants you to sign in with your Ethereum account:"), id="port"
        ),
        pytest.param(
            text(header="http://127.0.0.1:3000 wants you to sign in with your Ethereum account:"),
            id="scheme-ip-port",
        ),
        pytest.param(text(header="[::cafe]:80 wants you to sign in with your Ethereum account:"), id="ipv6"),
        pytest.param(
            text(header="[v1.fe80::a+en1] wants you to sign in with your Ethereum account:"), id="ipvfuture"
        ),
        pytest.param(
            text(header="ops@rewards.example wants you to sign in with your Ethereum account:"),
            id="userinfo",
        ),
        pytest.param(
            text(
                statement="I accept the Terms: https://rewards.example/tos?v=2#top (v2) [sic]; ok! ~*+=$&@'"
            ),
            id="statement-punctuation",
        ),
        pytest.param(text(statement="URI: looks like a field"), id="statement-like-a-field"),
    ],
)
def test_reference_layout_round_trips_exactly(source: str) -> None:
    parsed = parse(source)
    assert format_message(parsed) == source
    assert parse(format_message(parsed)) == parsed


def test_scheme_and_port_are_split_from_the_header() -> None:
    parsed = parse(
        text(header="https://rewards.example:8443 wants you to sign in with your Ethereum account:")
    )
    assert (parsed.scheme, parsed.domain) == ("https", "rewards.example:8443")
    assert (
        parse(text(header="localhost:8443 wants you to sign in with your Ethereum account:")).scheme is None
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2025-03-14T09:26:53Z", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)),
        ("2025-03-14T09:26:53.5Z", datetime(2025, 3, 14, 9, 26, 53, 500000, tzinfo=UTC)),
        ("2025-03-14T09:26:53.123456789Z", datetime(2025, 3, 14, 9, 26, 53, 123456, tzinfo=UTC)),
        ("2025-03-14T11:26:53+02:00", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)),
        ("2025-03-14T05:56:53.250-03:30", datetime(2025, 3, 14, 9, 26, 53, 250000, tzinfo=UTC)),
        ("2025-03-14t09:26:53z", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_are_aware_and_written_back_as_given(written: str, expected: datetime) -> None:
    source = text(fields=(*REQUIRED[:4], f"Issued At: {written}", f"Expiration Time: {written}"))
    parsed = parse(source)
    assert parsed.issued_at == expected
    assert parsed.expiration_time == expected
    assert parsed.issued_at.utcoffset() is not None
    assert format_message(parsed) == source


def test_constructed_message_formats_canonically_and_round_trips() -> None:
    minus_five = timezone(timedelta(hours=-5))
    built = message(
        issued_at=datetime(2025, 3, 14, 4, 26, 53, 120000, tzinfo=minus_five),
        expiration_time=datetime(2025, 3, 14, 10, 0, 0, 7, tzinfo=UTC),
        not_before=datetime(2025, 3, 14, 9, 0, tzinfo=UTC),
        request_id="",
        resources=("urn:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",),
        scheme="https",
    )
    rendered = format_message(built)
    assert "\nIssued At: 2025-03-14T04:26:53.120-05:00\n" in rendered
    assert "\nExpiration Time: 2025-03-14T10:00:00.000007Z\n" in rendered
    assert "\nNot Before: 2025-03-14T09:00:00Z\n" in rendered
    assert "\nRequest ID: \nResources:\n- urn:uuid:" in rendered
    assert rendered.startswith("https://rewards.example wants you")
    assert parse(rendered) == built
    assert parse(format_message(message(statement=None))) == message(statement=None)


def test_a_replaced_timestamp_is_written_anew_not_from_the_parsed_text() -> None:
    parsed = parse(BASE)
    later = dataclasses.replace(parsed, issued_at=ISSUED + timedelta(hours=1))
    assert "Issued At: 2025-03-14T10:26:53Z" in format_message(later)
    assert "Issued At: 2025-03-14T09:26:53.000Z" in format_message(parsed)


def test_equality_ignores_how_a_timestamp_was_written() -> None:
    a = parse(text(fields=(*REQUIRED[:4], "Issued At: 2025-03-14T09:26:53Z")))
    b = parse(text(fields=(*REQUIRED[:4], "Issued At: 2025-03-14T10:26:53.000+01:00")))
    assert a == b
    assert hash(a) == hash(b)
    assert format_message(a) != format_message(b)


@pytest.mark.parametrize(
    "changes",
    [
        {"address": USER.lower()},
        {"address": "0x" + USER[2:].upper()},
        {"issued_at": datetime(2025, 3, 14, 9, 26, 53)},
        {"expiration_time": datetime(2025, 3, 14, 9, 26, 53)},
        {"issued_at": datetime(2025, 3, 14, tzinfo=timezone(timedelta(seconds=30)))},
        {"statement": ""},
        {"statement": "two\nlines"},
        {"version": "2"},
        {"nonce": "short1"},
        {"nonce": "has-dash-123"},
        {"chain_id": -1},
        {"chain_id": 2**256},
        {"chain_id": True},
        {"domain": ""},
        {"domain": "rewards.example/path"},
        {"uri": "not a uri"},
        {"request_id": "has space"},
        {"resources": ("https://ok.example", "no scheme")},
        {"resources": ["https://ok.example"]},
        {"scheme": "1https"},
    ],
)
def test_building_an_invalid_message_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(SiweError) as caught:
        message(**changes)
    assert (caught.value.code, caught.value.status) == ("siwe_malformed", 400)


# --- malformed texts ----------------------------------------------------------------------------


def replace_line(source: str, old: str, new: str | None) -> str:
    lines = source.split("\n")
    assert old in lines
    if new is None:
        lines.remove(old)
    else:
        lines[lines.index(old)] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("", id="empty"),
        pytest.param("hello world", id="garbage"),
        pytest.param("\x00\xff" * 40, id="binary-garbage"),
        pytest.param(BASE.replace("\n", "\r\n"), id="crlf"),
        pytest.param(BASE.replace(USER, USER.lower()), id="all-lowercase-address"),
        pytest.param(BASE.replace(USER, USER[:2] + USER[2:].swapcase()), id="bad-checksum"),
        pytest.param(BASE.replace(USER, "0X" + USER[2:]), id="0X-prefix"),
        pytest.param(BASE.replace(USER, USER[:-1]), id="short-address"),
        pytest.param(replace_line(BASE, "Version: 1", "Version: 2"), id="version-2"),
        pytest.param(replace_line(BASE, "Version: 1", "Version: 1.0"), id="version-1.0"),
        pytest.param(replace_line(BASE, "Nonce: q7Rt2mXz9Kp4", "Nonce: q7Rt2mX"), id="nonce-7-chars"),
        pytest.param(replace_line(BASE, "Nonce: q7Rt2mXz9Kp4", "Nonce: q7Rt2mXz-Kp4"), id="nonce-dash"),
        pytest.param(replace_line(BASE, f"Chain ID: {CHAIN}", "Chain ID: ?"), id="chain-id-symbol"),
        pytest.param(replace_line(BASE, f"Chain ID: {CHAIN}", "Chain ID: -1"), id="chain-id-negative"),
        pytest.param(replace_line(BASE, f"Chain ID: {CHAIN}", "Chain ID: " + "9" * 79), id="chain-id-huge"),
        pytest.param(replace_line(BASE, f"Chain ID: {CHAIN}", "Chain ID: "), id="chain-id-empty"),
        pytest.param(replace_line(BASE, f"URI: {URI}", "URI: :not-a-uri"), id="uri-no-scheme"),
        pytest.param(replace_line(BASE, f"URI: {URI}", "URI: https://bad host/"), id="uri-space"),
        pytest.param(replace_line(BASE, f"URI: {URI}", "URI: https://[zz::1]/"), id="uri-bad-ipv6"),
        pytest.param(replace_line(BASE, f"URI: {URI}", f"uri: {URI}"), id="label-lowercase"),
        pytest.param(replace_line(BASE, f"URI: {URI}", f"URI:{URI}"), id="label-no-space"),
        *(
            pytest.param(replace_line(BASE, line, None), id=f"missing-{line.split(':')[0]}")
            for line in REQUIRED
        ),
        pytest.param(replace_line(BASE, "Version: 1", "Version: 1\nFoo: bar"), id="unknown-line-inside"),
        pytest.param(BASE + "\nFoo: bar", id="unknown-line-at-end"),
        pytest.param(BASE + "\nResources:\n- https://a.example\nExtra: 1", id="unknown-line-after-resources"),
        pytest.param(text(fields=(REQUIRED[1], REQUIRED[0], *REQUIRED[2:])), id="version-before-uri"),
        pytest.param(
            text(fields=(*REQUIRED[:2], REQUIRED[3], REQUIRED[2], REQUIRED[4])), id="nonce-before-chain"
        ),
        pytest.param(text(fields=(*REQUIRED[:3], REQUIRED[4], REQUIRED[3])), id="issued-before-nonce"),
        pytest.param(text(fields=(*REQUIRED, OPTIONAL[1], OPTIONAL[0])), id="not-before-before-expiration"),
        pytest.param(text(fields=(*REQUIRED, OPTIONAL[2], OPTIONAL[1])), id="request-id-before-not-before"),
        pytest.param(text(fields=(*REQUIRED, *OPTIONAL[3:], OPTIONAL[2])), id="request-id-after-resources"),
        pytest.param(text(fields=(*REQUIRED, OPTIONAL[0], OPTIONAL[0])), id="duplicate-expiration"),
        pytest.param(
            text(fields=(*REQUIRED, "Resources:", "- https://a.example - https://b.example")),
            id="two-resources-one-line",
        ),
        pytest.param(text(fields=(*REQUIRED, "Resources:", "-https://a.example")), id="resource-no-space"),
        pytest.param(text(fields=(*REQUIRED, "Resources:", "- :bad")), id="resource-not-uri"),
        pytest.param(
            text(fields=(*REQUIRED, "Resources: ", "- https://a.example")), id="resources-label-space"
        ),
        pytest.param(text(fields=(*REQUIRED[:4], "Issued At: 2025-03-14 09:26:53Z")), id="time-space"),
        pytest.param(text(fields=(*REQUIRED[:4], "Issued At: 2025-03-14T09:26:53")), id="time-no-offset"),
        pytest.param(text(fields=(*REQUIRED[:4], "Issued At: 2025-13-14T09:26:53Z")), id="time-month-13"),
        pytest.param(text(fields=(*REQUIRED[:4], "Issued At: 2025-02-29T09:26:53Z")), id="time-feb-29"),
        pytest.param(text(fields=(*REQUIRED[:4], "Issued At: 2025-03-14T09:26:60Z")), id="time-leap-second"),
        pytest.param(
            text(fields=(*REQUIRED[:4], "Issued At: 2025-03-14T09:26:53+0200")), id="time-offset-no-colon"
        ),
        pytest.param(
            text(fields=(*REQUIRED[:4], "Issued At: 2025-03-14T09:26:53+24:00")), id="time-offset-24h"
        ),
        pytest.param(text(fields=(*REQUIRED[:4], "Issued At: 1741944413")), id="time-unix"),
        pytest.param(text(fields=(*REQUIRED, "Expiration Time: tomorrow")), id="bad-expiration"),
        pytest.param(text(fields=(*REQUIRED, "Not Before: 2025-03-14")), id="bad-not-before"),
        pytest.param(text(fields=(*REQUIRED, "Request ID: a b")), id="request-id-space"),
        pytest.param(BASE.replace(f"{USER}\n\n", f"{USER}\n", 1), id="no-blank-after-address"),
        pytest.param(BASE.replace("Rewards.\n\n", "Rewards.\n", 1), id="no-blank-after-statement"),
        pytest.param(text(statement=None).replace("\n\n\nURI", "\n\n\n\nURI"), id="empty-statement"),
        pytest.param(text(statement=None).replace("\n\n\nURI", "\n\nURI"), id="one-blank-line-only"),
        pytest.param(BASE.replace("Sign in to Rewards.", "Sign in\nto Rewards."), id="statement-two-lines"),
        pytest.param(BASE.replace("Sign in to Rewards.", 'Say "hi"'), id="statement-quote"),
        pytest.param(BASE.replace("Sign in to Rewards.", "Café"), id="statement-non-ascii"),
        pytest.param(text(header=" wants you to sign in with your Ethereum account:"), id="no-domain"),
        pytest.param(text(header="#bad wants you to sign in with your Ethereum account:"), id="domain-hash"),
        pytest.param(
            text(header="[fe80::1%25eth0] wants you to sign in with your Ethereum account:"),
            id="ipv6-zone-id",
        ),
        pytest.param(
            text(header="[::cafe wants you to sign in with your Ethereum account:"), id="ipv6-unclosed"
        ),
        pytest.param(
            text(header="a.example/x wants you to sign in with your Ethereum account:"), id="domain-path"
        ),
        pytest.param(
            text(header="https:// wants you to sign in with your Ethereum account:"), id="scheme-no-domain"
        ),
        pytest.param(
            text(header="1x://a.example wants you to sign in with your Ethereum account:"), id="bad-scheme"
        ),
        pytest.param(
            text(header=f"{DOMAIN} wants you to sign in with your ethereum account:"), id="header-case"
        ),
        pytest.param(
            text(header=f"{DOMAIN} wants you to sign in with your Ethereum account"), id="header-colon"
        ),
        pytest.param(
            text(header=f"{DOMAIN}  wants you to sign in with your Ethereum account:"), id="header-2-spaces"
        ),
        pytest.param(f"{DOMAIN} wants you to sign in with your Ethereum account:\n{USER}", id="truncated"),
    ],
)
def test_text_off_the_grammar_is_malformed(source: str) -> None:
    error = malformed(source)
    assert isinstance(error, PersError)
    assert error.message


def test_malformed_names_the_offending_line() -> None:
    assert malformed(replace_line(BASE, "Version: 1", "Version: 2")).details["line"] == 7
    assert malformed(BASE + "\nFoo: bar").details["line"] == 11


# --- signatures -------------------------------------------------------------------------------


def test_recover_address_of_a_personal_sign_signature() -> None:
    assert recover_address(FULL, sign(FULL)) == USER
    assert recover_address(FULL, sign(FULL, OTHER_KEY)) == Account.from_key(OTHER_KEY).address


def test_recovery_id_0_or_1_is_accepted_like_27_or_28() -> None:
    signature = sign(BASE)
    assert recover_address(BASE, signature[:64] + bytes([signature[64] - 27])) == USER


def high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s[:64], id="64-bytes"),
        pytest.param(lambda s: s + b"\x00", id="66-bytes"),
        pytest.param(lambda s: s[:64] + b"\x1d", id="v-29"),
        pytest.param(lambda s: s[:64] + b"\x25", id="v-37-eip155"),
        pytest.param(lambda s: bytes(65), id="zeros"),
        pytest.param(lambda s: bytes(32) + s[32:], id="r-zero"),
        pytest.param(lambda s: s[:32] + bytes(32) + s[64:], id="s-zero"),
        pytest.param(lambda s: SECP256K1_N.to_bytes(32, "big") + s[32:], id="r-equals-n"),
        pytest.param(high_s, id="high-s-twin"),
    ],
)
def test_malformed_signature_recovers_nobody(mangle: Callable[[bytes], bytes]) -> None:
    signature = sign(BASE)
    assert recover_address(BASE, signature) == USER
    assert recover_address(BASE, mangle(signature)) is None


def test_high_s_twin_really_is_the_same_signature_for_eth_account() -> None:
    """Guards the test above: the twin is refused by policy, not because it is broken."""
    twin = high_s(sign(BASE))
    assert Account.recover_message(encode_defunct(text=BASE), signature=twin) == USER


# --- verify -----------------------------------------------------------------------------------


def check(source: str, signature: bytes | None = None, **overrides: object) -> SiweMessage:
    options: dict[str, object] = {"domain": DOMAIN, "chain_id": CHAIN, "now": NOW}
    options.update(overrides)
    return verify(source, sign(source) if signature is None else signature, **options)  # type: ignore[arg-type]


def refused(code: str, source: str, signature: bytes | None = None, **overrides: object) -> None:
    with pytest.raises(SiweError) as caught:
        check(source, signature, **overrides)
    assert caught.value.code == code
    assert caught.value.status == (400 if code == "siwe_malformed" else 401)


def test_verify_accepts_a_well_signed_message_and_returns_it() -> None:
    assert check(BASE) == parse(BASE)
    verified = check(FULL, uri=URI, now=datetime(2025, 3, 14, 9, 30, tzinfo=UTC))
    assert verified.address == USER
    assert verified.nonce == "q7Rt2mXz9Kp4"
    assert verified.resources == parse(FULL).resources


def test_verify_accepts_a_message_without_statement_and_with_scheme() -> None:
    source = text(header=f"https://{DOMAIN} wants you to sign in with your Ethereum account:", statement=None)
    verified = check(source)
    assert (verified.scheme, verified.domain, verified.statement) == ("https", DOMAIN, None)


def test_verify_accepts_a_message_built_with_format_message() -> None:
    built = message(expiration_time=NOW + timedelta(minutes=5), resources=("https://rewards.example/a",))
    assert check(format_message(built)) == built


def test_verify_refuses_another_domain() -> None:
    refused("siwe_domain_mismatch", BASE, domain="evil.example")
    refused("siwe_domain_mismatch", BASE, domain=f"{DOMAIN}:443")
    port = text(header=f"{DOMAIN}:8443 wants you to sign in with your Ethereum account:")
    refused("siwe_domain_mismatch", port)
    assert check(port, domain=f"{DOMAIN}:8443").domain == f"{DOMAIN}:8443"


def test_verify_refuses_another_chain() -> None:
    refused("siwe_chain_mismatch", BASE, chain_id=1)


def test_verify_checks_the_uri_only_when_asked() -> None:
    refused("siwe_uri_mismatch", BASE, uri="https://rewards.example/other")
    assert check(BASE, uri=URI).uri == URI
    assert check(BASE).uri == URI


def test_verify_refuses_an_expired_message_from_the_expiration_instant() -> None:
    source = text(fields=(*REQUIRED, OPTIONAL[0]))
    expiry = datetime(2025, 3, 14, 9, 36, 53, tzinfo=UTC)
    assert check(source, now=expiry - timedelta(microseconds=1)).expiration_time == expiry
    refused("siwe_expired", source, now=expiry)
    refused("siwe_expired", source, now=expiry + timedelta(days=1))


def test_verify_refuses_a_message_before_not_before() -> None:
    source = text(fields=(*REQUIRED, "Not Before: 2025-03-14T09:40:00Z"))
    start = datetime(2025, 3, 14, 9, 40, tzinfo=UTC)
    refused("siwe_not_yet_valid", source, now=start - timedelta(microseconds=1))
    assert check(source, now=start).not_before == start


def test_verify_refuses_a_message_issued_beyond_the_clock_skew() -> None:
    refused("siwe_issued_in_future", BASE, now=ISSUED - timedelta(minutes=5, microseconds=1))
    assert check(BASE, now=ISSUED - timedelta(minutes=5)).issued_at == ISSUED
    refused("siwe_issued_in_future", BASE, now=ISSUED - timedelta(seconds=2), skew=timedelta(seconds=1))
    assert check(BASE, now=ISSUED - timedelta(seconds=2), skew=timedelta(seconds=3)) == parse(BASE)


def test_verify_compares_instants_across_offsets() -> None:
    source = text(
        fields=(
            *REQUIRED[:4],
            "Issued At: 2025-03-14T11:26:53+02:00",
            "Expiration Time: 2025-03-14T04:30:00-05:00",
        )
    )
    assert check(source, now=datetime(2025, 3, 14, 9, 29, 59, tzinfo=UTC)).issued_at == ISSUED
    refused("siwe_expired", source, now=datetime(2025, 3, 14, 9, 30, tzinfo=UTC))


def test_verify_refuses_a_signature_by_another_key() -> None:
    refused("siwe_bad_signature", BASE, sign(BASE, OTHER_KEY))


def test_verify_refuses_a_message_claiming_someone_elses_address() -> None:
    victim = Account.from_key(OTHER_KEY).address
    forged = BASE.replace(USER, victim)
    assert parse(forged).address == victim
    refused("siwe_bad_signature", forged, sign(forged, KEY))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Nonce: q7Rt2mXz9Kp4", "Nonce: q7Rt2mXz9Kp5"),
        ("Sign in to Rewards.", "Sign in to Rewards!"),
        (f"URI: {URI}", f"URI: {URI}/"),
        ("Issued At: 2025-03-14T09:26:53.000Z", "Issued At: 2025-03-14T09:26:53Z"),
    ],
)
def test_verify_refuses_text_tampered_after_signing(old: str, new: str) -> None:
    signature = sign(BASE)
    tampered = BASE.replace(old, new)
    assert tampered != BASE
    assert check(BASE, signature) == parse(BASE)
    refused("siwe_bad_signature", tampered, signature)


def test_verify_refuses_a_malformed_signature_as_bad_signature() -> None:
    refused("siwe_bad_signature", BASE, b"")
    refused("siwe_bad_signature", BASE, sign(BASE)[:64])
    refused("siwe_bad_signature", BASE, high_s(sign(BASE)))


def test_verify_refuses_malformed_text_before_anything_else() -> None:
    lowercase = BASE.replace(USER, USER.lower())
    refused("siwe_malformed", lowercase, sign(lowercase), domain="other.example")
    refused("siwe_malformed", BASE + "\n", sign(BASE + "\n"))


def test_verify_needs_an_aware_now_and_a_non_negative_skew() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check(BASE, now=datetime(2025, 3, 14, 9, 27))
    with pytest.raises(ValueError, match="skew"):
        check(BASE, skew=timedelta(seconds=-1))


def test_siwe_error_is_a_pers_error_with_a_401_default() -> None:
    error = SiweError("nope")
    assert isinstance(error, PersError)
    assert (error.code, error.status) == ("siwe_invalid", 401)
    assert siwe.HEADER_SUFFIX == " wants you to sign in with your Ethereum account:"
