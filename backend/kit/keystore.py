"""Custodial keys at rest: AES-256-GCM under `PERS_MASTER_KEY`.

A sealed value reads `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id (a hash
prefix of the master key) tells a wrong master key from corrupted data, and the caller's
`context` (e.g. "business:42:signer") is authenticated as associated data, so a sealed key
copied onto another row does not open there."""

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.kit.errors import KeystoreError

_VERSION = "v1"
_NONCE = 12


def parse_master_key(text: str) -> bytes:
    """A 32-byte key given as 64 hex digits or unpadded/padded base64url."""
    text = text.strip()
    try:
        key = (
            bytes.fromhex(text.removeprefix("0x")) if len(text.removeprefix("0x")) == 64 else _b64decode(text)
        )
    except ValueError as exc:
        raise KeystoreError("PERS_MASTER_KEY is neither hex nor base64", code="bad_master_key") from exc
    if len(key) != 32:
        raise KeystoreError("PERS_MASTER_KEY must be 32 bytes", code="bad_master_key")
    return key


def dev_secret(data_dir: Path, name: str) -> bytes:
    """An embedded default secret: 32 random bytes generated once into the data directory, readable
    by its owner only, returned as its hex text."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def dev_master_key(data_dir: Path) -> bytes:
    """The embedded default master key (see `dev_secret`)."""
    return parse_master_key(dev_secret(data_dir, "master.key").decode())


class Keystore:
    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(master_key)
        self.key_id = hashlib.sha256(b"pers-keystore" + master_key).hexdigest()[:8]

    def seal(self, secret: bytes, context: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, secret, context.encode())
        return f"{_VERSION}.{self.key_id}.{base64.urlsafe_b64encode(sealed).decode()}"

    def open(self, token: str, context: str) -> bytes:
        try:
            version, key_id, body = token.split(".")
            raw = _b64decode(body)
        except ValueError as exc:
            raise KeystoreError("malformed sealed value", code="keystore_malformed") from exc
        if version != _VERSION:
            raise KeystoreError(f"unknown keystore version {version!r}", code="keystore_malformed")
        if key_id != self.key_id:
            raise KeystoreError("sealed under another master key", code="keystore_wrong_key")
        try:
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode())
        except InvalidTag as exc:
            raise KeystoreError(
                "sealed value does not open in this context", code="keystore_tampered"
            ) from exc

    def new_account(self, context: str) -> tuple[str, str]:
        """A fresh secp256k1 key: its address and the sealed private key. The key itself is not returned."""
        # Imported here: eth_account builds py_ecc's pairing tables at import (seconds of CPU on a busy
        # machine), and the settings import this module, so every `pers` process, the API's supervisor
        # (which must listen at once) among them, paid for it.
        from eth_account import Account

        account = Account.create()
        return account.address, self.seal(bytes(account.key), context)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
