"""The one exception root of civsync.

Every error civsync raises on purpose is a ``CivsyncError``. It is either *retriable*
(the same call may succeed later: a broker or database restarting, a network blip) or
*fatal* (retrying cannot help: bad configuration, a lost replication slot, a schema the
registry rejects). Adapters translate vendor errors into these with ``raise ... from exc``
so callers decide on the class, never on a vendor type or a message text.
"""

from __future__ import annotations


class CivsyncError(Exception):
    """Root of every error civsync raises on purpose."""


class RetriableError(CivsyncError):
    """The operation failed for a passing reason; the same call may succeed later."""


class FatalError(CivsyncError):
    """The operation cannot succeed by retrying; an operator has to act."""


class ConfigError(FatalError):
    """The configuration is invalid; the message names the offending field."""


class ServiceUnavailableError(RetriableError):
    """A backing service (Kafka, the registry, a store) could not be reached."""
