"""Errors shared across modules, importable without the heavy ones (the CLI catches them at start-up cost zero)."""


class ClientConfigError(ValueError):
    """The model client cannot be configured (e.g. no model given)."""


class FatalAPIError(RuntimeError):
    """An error no retry can fix and that would fail every request (bad key, unknown model or endpoint)."""
