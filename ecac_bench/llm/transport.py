"""The transport seam: send one chat-completions body to one base URL, return the decoded JSON, or raise a typed
error the engine knows how to handle. A new backend (another SDK, a local model, a message queue) is one class with
``__init__(config)``, ``send`` and ``aclose``; :class:`AiohttpTransport` is the default.

Errors:

* :class:`RetryableError` (429, 408, 409, 5xx, a body that is not JSON, a connection that failed), with the
  server's ``Retry-After`` when it sent one; its subclasses :class:`RequestTimeout` (no answer within the deadline)
  and :class:`ConnectionClosed` (the server closed the connection without any response: not a timeout);
* :class:`~ecac_bench.errors.FatalAPIError` (401, 403, 404: bad key, unknown model or path; would fail every
  request);
* :class:`HTTPError` (any other status: that request fails, e.g. a prompt too long).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from yarl import URL

from ecac_bench import __version__
from ecac_bench.errors import FatalAPIError
from ecac_bench.llm.settings import ClientConfig, completions_url, public_url

# Longest Retry-After we honour; a server asking for more gets this (the run must still finish).
MAX_RETRY_AFTER = 120.0
# How much of an error body goes into a failure reason.
_MESSAGE_CHARS = 300


class TransportError(Exception):
    """A request that got no usable answer."""


class RetryableError(TransportError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class RequestTimeout(RetryableError):
    def __init__(self) -> None:
        super().__init__("timeout")


class ConnectionClosed(RetryableError):
    def __init__(self) -> None:
        super().__init__("connection closed with no response")


class HTTPError(TransportError):
    """A status no retry fixes for this request (400, 413, 422, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status


class Transport(Protocol):
    """Sends chat-completions bodies; one instance per run, created inside the run's event loop."""

    async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
        """The decoded JSON answer of ``POST {base_url}/chat/completions``, or one of this module's errors."""
        ...

    async def aclose(self) -> None: ...


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    seconds: float | None = None
    if (ms := headers.get("retry-after-ms")) is not None:
        seconds = _to_float(ms, 1000.0)
    if seconds is None and (value := headers.get("retry-after")) is not None:
        seconds = _to_float(value, 1.0)
        if seconds is None:
            parsed = email.utils.parsedate_tz(value)
            seconds = None if parsed is None else email.utils.mktime_tz(parsed) - time.time()
    return None if seconds is None else min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _to_float(value: str, scale: float) -> float | None:
    try:
        number = float(value) / scale
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def decode_body(raw: bytes) -> Any:
    """JSON of a response body. orjson first; a body orjson refuses only for a number out of its range or NaN
    (``"usage": {"prompt_tokens": NaN}``) is read by the standard library, so that broken accounting never costs an
    answer; anything else is a malformed response (retried)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RetryableError("malformed response: not JSON") from exc


def _error_message(raw: bytes) -> str:
    """The server's error message (``{"error": {"message": ...}}`` or the body's start), shortened, one line."""
    try:
        data = orjson.loads(raw)
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else data.get("error", data)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        message = raw[:_MESSAGE_CHARS].decode("utf-8", "replace")
    return " ".join(str(message).split())[:_MESSAGE_CHARS]


def raise_for_status(status: int, headers: Mapping[str, str], raw: bytes, endpoint: str) -> None:
    """Turn a non-200 status into the error the engine expects."""
    if status in (401, 403, 404):
        raise FatalAPIError(f"{endpoint}: HTTP {status}: {_error_message(raw)}")
    if status in (408, 409, 429) or status >= 500:
        raise RetryableError(f"HTTP {status}", parse_retry_after(headers))
    raise HTTPError(status, _error_message(raw))


class AiohttpTransport:
    """One aiohttp ``ClientSession`` per run, its connection pool sized to the concurrency, bodies encoded and
    decoded with orjson. The SDK it replaces spent ~1 ms of CPU per request around aiohttp's ~0.25 ms
    (bench/judge_throughput.py measures both against a plain aiohttp loop)."""

    def __init__(self, config: ClientConfig) -> None:
        self._headers = {
            "Authorization": f"Bearer {config.endpoint.api_key}",
            "Content-Type": "application/json",
            "User-Agent": f"ecac-bench/{__version__}",
        }
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        # Parsed once per base URL (aiohttp would parse a str on every request).
        self._urls = {u: URL(completions_url(u), encoded=True) for u in config.endpoint.base_urls}
        self._public = {u: public_url(u) for u in config.endpoint.base_urls}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.concurrency, ttl_dns_cache=300),
            timeout=self._timeout,
        )

    async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
        try:
            async with self._session.post(self._urls[base_url], data=orjson.dumps(body), headers=self._headers) as r:
                raw = await r.read()
                if r.status != 200:
                    raise_for_status(r.status, r.headers, raw, self._public[base_url])
        except asyncio.TimeoutError as exc:
            raise RequestTimeout from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise ConnectionClosed from exc
        except aiohttp.ClientPayloadError as exc:
            raise RetryableError("connection closed mid-response") from exc
        except aiohttp.ClientError as exc:
            # Not str(exc): aiohttp's messages repeat the URL, whose query may carry a secret.
            detail = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
            raise RetryableError(f"connection error: {type(exc).__name__}{detail}") from exc
        return decode_body(raw)

    async def aclose(self) -> None:
        await self._session.close()
