"""Errors shared across modules, importable without the heavy ones (the CLI catches them at start-up cost zero)."""


class ClientConfigError(ValueError):
    """The model client cannot be configured: a bad flag or environment value (the message names which), no model,
    or a response cache that cannot be opened and written. Raised before anything is sent."""


class RunStoppedError(RuntimeError):
    """An LLM run stopped before its end; answers already received are kept (cache or fallback file)."""


class FatalAPIError(RunStoppedError):
    """An error no retry can fix and that would fail every request (bad key, unknown model or endpoint)."""


class CacheWriteError(RunStoppedError):
    """The response cache failed on write mid-run (disk full, read-only, corrupt): sending stopped, and the answers
    received since are in the fallback file the message names (imported by the next run that opens the cache)."""
