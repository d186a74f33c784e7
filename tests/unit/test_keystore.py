"""Custodial keys sealed with AES-GCM under the master key."""

import base64
import stat
from pathlib import Path

import pytest
from eth_account import Account

from backend.kit.errors import KeystoreError
from backend.kit.keystore import Keystore, dev_master_key, parse_master_key

MASTER = bytes(range(32))


def test_a_sealed_key_opens_only_in_its_context_and_under_its_master_key() -> None:
    store = Keystore(MASTER)
    address, sealed = store.new_account("business:1:signer")
    assert Account.from_key(store.open(sealed, "business:1:signer")).address == address
    assert address not in sealed and "business" not in sealed
    with pytest.raises(KeystoreError) as moved:
        store.open(sealed, "business:2:signer")
    assert moved.value.code == "keystore_tampered"
    with pytest.raises(KeystoreError) as wrong:
        Keystore(bytes(32)).open(sealed, "business:1:signer")
    assert wrong.value.code == "keystore_wrong_key"


def test_tampering_and_garbage_are_refused() -> None:
    store = Keystore(MASTER)
    sealed = store.seal(b"secret", "ctx")
    version, key_id, body = sealed.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    tampered = f"{version}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    for token, code in (
        (tampered, "keystore_tampered"),
        ("nonsense", "keystore_malformed"),
        (f"v9.{key_id}.{body}", "keystore_malformed"),
    ):
        with pytest.raises(KeystoreError) as refused:
            store.open(token, "ctx")
        assert refused.value.code == code
    assert store.seal(b"secret", "ctx") != sealed  # a fresh nonce every time


def test_master_key_formats() -> None:
    assert parse_master_key(MASTER.hex()) == MASTER
    assert parse_master_key("0x" + MASTER.hex()) == MASTER
    assert parse_master_key(base64.urlsafe_b64encode(MASTER).decode().rstrip("=")) == MASTER
    for bad in ("abc", "zz" * 32, base64.b64encode(bytes(16)).decode()):
        with pytest.raises(KeystoreError):
            parse_master_key(bad)


def test_the_development_key_is_generated_once_and_private(tmp_path: Path) -> None:
    first = dev_master_key(tmp_path / "data")
    assert dev_master_key(tmp_path / "data") == first and len(first) == 32
    mode = (tmp_path / "data" / "master.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
