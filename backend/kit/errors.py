"""Domain errors: one base carrying a machine-readable code and an HTTP status."""

from typing import Any


class PersError(Exception):
    """An error the platform reports to its caller as `{"error": {code, message, details}}`."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details


class NotFound(PersError):
    code = "not_found"
    status = 404


class Conflict(PersError):
    code = "conflict"
    status = 409


class ConfigError(PersError):
    code = "config_error"
    status = 500


class ChainError(PersError):
    """A node or contract refused or failed a request."""

    code = "chain_error"
    status = 502


class ChainUnavailable(ChainError):
    """The node did not answer: worth retrying, unlike a revert."""

    code = "chain_unavailable"
    status = 503


class GasCapExceeded(ChainError):
    code = "gas_cap_exceeded"
    status = 422


class KeystoreError(PersError):
    code = "keystore_error"
    status = 500
