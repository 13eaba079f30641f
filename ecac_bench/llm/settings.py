"""One settings object for every LLM client of the project (in the spirit of twine's ``Settings``).

:class:`Settings` owns the options: their argparse registration (the CLI commands), their environment variables
(the lmms-eval tasks and the trainer rewards, which have no flags) and their validation (one-line errors naming the
flag or variable, raised as :class:`~ecac_bench.errors.ClientConfigError` before anything is sent). It builds the
client configs (:meth:`Settings.client_config`) and opens the response cache once (:attr:`Settings.cache`);
``LLMClient.from_settings(settings, role)`` makes the clients.

An **endpoint** is base URL(s) + one API key + a model. A key belongs to one endpoint:

* the judge: ``--judge-base-url`` (repeatable, or a comma list) / ``ECAC_JUDGE_BASE_URL``, then the SDK's own
  ``OPENAI_BASE_URL``, then ``https://api.openai.com/v1``; key ``--judge-api-key`` / ``ECAC_JUDGE_API_KEY``, and
  ``OPENAI_API_KEY`` only when the URL is the SDK's own (``OPENAI_BASE_URL`` or the default), never for a URL given
  on the command line or in an ``ECAC_*`` variable;
* the VLM of ``balanced`` and ``make-qa``: ``--vlm-base-url`` / ``ECAC_VLM_BASE_URL`` with its own key
  ``--vlm-api-key`` / ``ECAC_VLM_API_KEY``; without a VLM URL the VLM is the judge endpoint (its URLs and key),
  with ``--vlm-model`` / ``ECAC_VLM_MODEL`` as the model when given.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ecac_bench.errors import ClientConfigError
from ecac_bench.llm.cache import ENV_CACHE_DIR, ResponseCache
from ecac_bench.llm.images import ImageRule

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# vLLM started without --api-key accepts any key; a placeholder keeps the Authorization header well-formed.
PLACEHOLDER_API_KEY = "EMPTY"
# Far above what the project's prompts need (a judge score is ~10 tokens, a make-qa list a few hundred), room for a
# reasoning judge's <think> block, and bounded: hosted APIs count max_tokens against tokens-per-minute limits.
DEFAULT_MAX_TOKENS = 2048


def public_url(url: str) -> str:
    """The URL without a ``user:password@`` part or a query (either may carry a secret), for keys and reports;
    a malformed URL loses them too (it is shown in error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    base = url.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = base.partition("://")
    authority, slash, path = (rest if sep else base).partition("/")
    return f"{scheme}{sep}{authority.rsplit('@', 1)[-1]}{slash}{path}".rstrip("/")


def completions_url(base_url: str) -> str:
    """``{base_url}/chat/completions``, keeping a query the base URL has (e.g. ``?api-version=...``)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/chat/completions", parts.query, ""))


# -- validation --------------------------------------------------------------------------------------------------


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"not an integer: {value!r}") from None


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        return float(value if isinstance(value, (int, float)) else str(value).strip())
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None


def _at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}, got {v}"


def _positive(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else f"must be a finite number > 0, got {v}"


def _temperature(v: float) -> str | None:
    return None if math.isfinite(v) and 0 <= v <= 2 else f"must be a finite number in 0-2, got {v}"


def _structured(v: str) -> str | None:
    return None if v in ("auto", "off") else f"must be 'auto' or 'off', got {v!r}"


@dataclass(frozen=True)
class Option:
    """One client option: its flag, environment variable, parser, check and default."""

    name: str
    flag: str
    env: str
    parse: Callable[[Any], Any]
    check: Callable[[Any], str | None]
    default: Any
    help: str

    def value(self, given: Any, env: Mapping[str, str]) -> Any:
        """The flag's value, else the variable's, else the default; parsed and checked (errors name the source)."""
        source, raw = (self.flag, given) if given is not None else (self.env, env.get(self.env) or None)
        if raw is None:
            return self.default
        try:
            value = self.parse(raw)
        except ValueError as exc:
            raise ClientConfigError(f"{source}: {exc}") from None
        if (problem := self.check(value)) is not None:
            raise ClientConfigError(f"{source}: {problem}")
        return value


OPTIONS: tuple[Option, ...] = (
    Option("concurrency", "--concurrency", "ECAC_JUDGE_CONCURRENCY", _as_int, _at_least(1), 32, "requests in flight"),
    Option("timeout", "--timeout", "ECAC_JUDGE_TIMEOUT", _as_float, _positive, 60.0, "seconds per HTTP attempt"),
    Option("max_retries", "--max-retries", "ECAC_JUDGE_MAX_RETRIES", _as_int, _at_least(0), 6, "retries per request"),
    Option("temperature", "--temperature", "ECAC_JUDGE_TEMPERATURE", _as_float, _temperature, 0.0, "sampling"),
    Option(
        "max_tokens",
        "--max-tokens",
        "ECAC_JUDGE_MAX_TOKENS",
        _as_int,
        _at_least(1),
        DEFAULT_MAX_TOKENS,
        "answer length limit in tokens",
    ),
    Option("rpm", "--rpm", "ECAC_JUDGE_RPM", _as_float, _positive, None, "requests-per-minute limit (hosted APIs)"),
    Option("tpm", "--tpm", "ECAC_JUDGE_TPM", _as_float, _positive, None, "tokens-per-minute limit (hosted APIs)"),
    Option(
        "image_max_side",
        "--image-max-side",
        "ECAC_JUDGE_IMAGE_MAX_SIDE",
        _as_int,
        _at_least(1),
        None,
        "downscale the judge's images to this longer side (px)",
    ),
    Option(
        "structured_output",
        "--structured-output",
        "ECAC_JUDGE_STRUCTURED_OUTPUT",
        str,
        _structured,
        "auto",
        "auto: ask for a JSON schema where the server supports it; off: never",
    ),
)
_BY_NAME = {o.name: o for o in OPTIONS}
PARSE_RETRIES = Option(
    "parse_retries", "--parse-retries", "", _as_int, _at_least(0), None, "repair turns for unreadable answers"
)


def check_api_key(key: str, source: str) -> str:
    """``key`` if it can go into an Authorization header as it is; the error names the source, never the key."""
    if not key:
        raise ClientConfigError(f"{source}: the API key is empty")
    if not all("!" <= c <= "~" for c in key):
        raise ClientConfigError(
            f"{source}: the API key contains whitespace, control or non-ASCII characters "
            "(a trailing newline from a file?); it is not sent as it is"
        )
    return key


def check_base_url(url: str, source: str, *, http: bool = True) -> str:
    """``url`` if it is a URL with a host and no credentials, with an http(s) scheme when ``http`` (the flags and
    variables; another transport may use its own scheme); the error shows it without secrets."""
    shown = public_url(url) if url.isprintable() else repr(public_url(url))[:200]
    if not url or not url.isprintable() or any(c.isspace() for c in url):
        raise ClientConfigError(f"{source}: not a URL (empty, or with spaces or control characters): {shown}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise ClientConfigError(f"{source}: not a valid URL ({exc}): {shown}") from None
    if (http and parts.scheme not in ("http", "https")) or not parts.hostname:
        raise ClientConfigError(f"{source}: expected an http(s) URL with a host, got {shown}")
    if "@" in parts.netloc:
        raise ClientConfigError(
            f"{source}: credentials in the URL are not supported ({shown}); pass the key with its key option"
        )
    if parts.fragment:
        raise ClientConfigError(f"{source}: a base URL has no #fragment: {shown}")
    return url


def _split_urls(values: str | Sequence[str]) -> list[str]:
    items = [values] if isinstance(values, str) else list(values)
    return [u.strip() for item in items for u in item.split(",") if u.strip()]


# -- endpoints and client configs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where one model is served: one or more base URLs sharing one key (several servers of one model)."""

    base_urls: tuple[str, ...]
    model: str
    api_key: str = field(default=PLACEHOLDER_API_KEY, repr=False)
    role: str = "judge"  # names the flags in errors: --judge-model, --vlm-model

    def __post_init__(self) -> None:
        if not self.model:
            raise ClientConfigError(
                f"no {self.role} model: pass --{self.role}-model or set ECAC_{self.role.upper()}_MODEL"
            )
        if not self.base_urls:
            raise ClientConfigError(f"--{self.role}-base-url: no URL given")
        for url in self.base_urls:
            check_base_url(url, f"--{self.role}-base-url", http=False)
        if len(set(self.base_urls)) != len(self.base_urls):
            raise ClientConfigError(f"--{self.role}-base-url: a URL is given twice")
        check_api_key(self.api_key, f"the {self.role} API key")

    @cached_property
    def public_urls(self) -> tuple[str, ...]:
        return tuple(public_url(u) for u in self.base_urls)

    def redact(self, text: str) -> str:
        """``text`` with the key masked (server error messages sometimes quote it)."""
        return text.replace(self.api_key, "***") if self.api_key != PLACEHOLDER_API_KEY else text


@dataclass(frozen=True)
class ClientConfig:
    """How one client calls its endpoint. Built by :class:`Settings` (flags, environment) or directly in Python;
    validated the same way either way. ``api_key`` stays in ``endpoint`` and out of ``repr`` and :meth:`describe`."""

    endpoint: Endpoint
    concurrency: int = 32
    timeout: float = 60.0
    max_retries: int = 6
    temperature: float = 0.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    rpm: float | None = None
    tpm: float | None = None
    image: ImageRule = field(default_factory=ImageRule)
    structured_output: bool = True
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # How long a claim on an in-flight request lasts without renewal (renewed every third of it while alive).
    claim_lease: float = 30.0

    def __post_init__(self) -> None:
        for name in ("concurrency", "timeout", "max_retries", "temperature", "max_tokens", "rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (problem := _BY_NAME[name].check(value)) is not None:
                raise ClientConfigError(f"{_BY_NAME[name].flag}: {problem}")
        if self.image.max_side is not None and self.image.max_side < 1:
            raise ClientConfigError(f"--image-max-side: must be >= 1, got {self.image.max_side}")
        for name in ("backoff_base", "backoff_max", "claim_lease"):
            if _positive(getattr(self, name)) is not None:
                raise ClientConfigError(f"{name}: must be a finite number > 0, got {getattr(self, name)}")

    @property
    def model(self) -> str:
        return self.endpoint.model

    @cached_property
    def params(self) -> dict[str, Any]:
        """The sampling parameters every request sends (a request's own ``params`` override them)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def describe(self) -> dict[str, Any]:
        """What reports record about the client: everything but the key."""
        return {
            "model": self.model,
            "base_url": ", ".join(self.endpoint.public_urls),
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "params": dict(self.params),
            "rate_limits": {"rpm": self.rpm, "tpm": self.tpm},
            "image": self.image.describe(),
            "structured_output": "auto" if self.structured_output else "off",
        }


# -- the settings ---------------------------------------------------------------------------------------------


def _judge_endpoint(urls: Any, key: Any, env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """(base URLs, key) of the judge: see the module docstring for the rules."""
    if urls:
        base_urls, source = _split_urls(urls), "--judge-base-url"
    elif env.get("ECAC_JUDGE_BASE_URL"):
        base_urls, source = _split_urls(env["ECAC_JUDGE_BASE_URL"]), "ECAC_JUDGE_BASE_URL"
    elif env.get("OPENAI_BASE_URL"):
        base_urls, source = _split_urls(env["OPENAI_BASE_URL"]), "OPENAI_BASE_URL"
    else:
        base_urls, source = [DEFAULT_BASE_URL], "default"
    for url in base_urls:
        check_base_url(url, source)
    if key is not None:
        api_key = check_api_key(key, "--judge-api-key")
    elif env.get("ECAC_JUDGE_API_KEY"):
        api_key = check_api_key(env["ECAC_JUDGE_API_KEY"], "ECAC_JUDGE_API_KEY")
    elif source in ("OPENAI_BASE_URL", "default") and env.get("OPENAI_API_KEY"):
        # The SDK's key goes only to the SDK's own URL, never to one given for ecac-bench.
        api_key = check_api_key(env["OPENAI_API_KEY"], "OPENAI_API_KEY")
    else:
        api_key = PLACEHOLDER_API_KEY
    return tuple(base_urls), api_key


def _vlm_endpoint(urls: Any, key: Any, env: Mapping[str, str]) -> tuple[tuple[str, ...] | None, str]:
    """(base URLs, key) of the VLM; no URLs: the VLM is the judge endpoint (and a VLM key alone is an error)."""
    if urls:
        base_urls, source = _split_urls(urls), "--vlm-base-url"
    elif env.get("ECAC_VLM_BASE_URL"):
        base_urls, source = _split_urls(env["ECAC_VLM_BASE_URL"]), "ECAC_VLM_BASE_URL"
    else:
        if key is not None:
            raise ClientConfigError("--vlm-api-key: a key belongs to an endpoint; give the VLM's --vlm-base-url too")
        return None, PLACEHOLDER_API_KEY
    for url in base_urls:
        check_base_url(url, source)
    if key is not None:
        return tuple(base_urls), check_api_key(key, "--vlm-api-key")
    if env.get("ECAC_VLM_API_KEY"):
        return tuple(base_urls), check_api_key(env["ECAC_VLM_API_KEY"], "ECAC_VLM_API_KEY")
    return tuple(base_urls), PLACEHOLDER_API_KEY


@dataclass(frozen=True)
class Settings:
    """Every LLM option of a command (or of the environment), validated. Build with :meth:`from_argparse` or
    :meth:`from_env`; make clients with ``LLMClient.from_settings(settings, "judge" | "vlm")``."""

    judge_urls: tuple[str, ...]
    judge_key: str = field(repr=False)
    judge_model: str
    vlm_urls: tuple[str, ...] | None  # None: the VLM is the judge endpoint
    vlm_key: str = field(repr=False)
    vlm_model: str | None
    options: Mapping[str, Any]
    cache_dir: Path | None
    use_cache: bool = True
    progress: bool = True
    parse_retries: int | None = None

    # -- argparse ---------------------------------------------------------------------------------------------

    @staticmethod
    def register_argparse_arguments(
        parser: argparse.ArgumentParser, *, vlm: bool = False, parse_retries: int | None = None
    ) -> None:
        """Add the LLM options to a command: the judge endpoint, the client options, the VLM endpoint when the
        command has one (``vlm``), and ``--parse-retries`` with the command's default when it parses answers."""
        group = parser.add_argument_group("judge model (any OpenAI-compatible endpoint, e.g. `vllm serve MODEL`)")
        group.add_argument("--judge-model", default=None, help="model name (default $ECAC_JUDGE_MODEL)")
        group.add_argument(
            "--judge-base-url",
            action="append",
            default=None,
            help="API base URL; repeat it (or give a comma list) to spread requests over several servers of the "
            "same model (default $ECAC_JUDGE_BASE_URL, then $OPENAI_BASE_URL, then the OpenAI API)",
        )
        group.add_argument(
            "--judge-api-key",
            default=None,
            help="the judge endpoint's key; prefer $ECAC_JUDGE_API_KEY (a flag is visible to other users in `ps`). "
            "$OPENAI_API_KEY is used only with $OPENAI_BASE_URL or the OpenAI API",
        )
        client = parser.add_argument_group("LLM client (flag, then environment variable, then default)")
        for option in OPTIONS:
            shown = option.default if option.default is not None else "none"
            if option.name == "image_max_side":
                shown = "the protocol's pixel budget"
            client.add_argument(
                option.flag, default=None, metavar=option.name.upper(), help=f"{option.help} (${option.env}; {shown})"
            )
        client.add_argument(
            "--cache-dir", type=Path, default=None, help=f"response cache dir (${ENV_CACHE_DIR}; ~/.cache/ecac-bench)"
        )
        client.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
        client.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        if parse_retries is not None:
            client.add_argument(
                "--parse-retries", default=parse_retries, metavar="N", help=f"{PARSE_RETRIES.help} ({parse_retries})"
            )
        if vlm:
            group = parser.add_argument_group("vision model for image-grounded steps (default: the judge endpoint)")
            group.add_argument("--vlm-model", default=None, help="VLM name (default $ECAC_VLM_MODEL, then the judge's)")
            group.add_argument(
                "--vlm-base-url",
                action="append",
                default=None,
                help="VLM API base URL(s) (default $ECAC_VLM_BASE_URL, then the judge endpoint with its key)",
            )
            group.add_argument(
                "--vlm-api-key", default=None, help="the VLM endpoint's own key (prefer $ECAC_VLM_API_KEY)"
            )

    @classmethod
    def from_argparse(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
        return cls.from_env(env, **vars(args))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Settings from flag values (argparse ``dest`` names: ``judge_model``, ``concurrency``, ...; None or absent
        = not given) and the environment (``os.environ`` by default)."""
        env = os.environ if env is None else env
        urls, key = _judge_endpoint(flags.get("judge_base_url"), flags.get("judge_api_key"), env)
        vlm_urls, vlm_key = _vlm_endpoint(flags.get("vlm_base_url"), flags.get("vlm_api_key"), env)
        parse_retries = flags.get("parse_retries")
        if parse_retries is not None:
            parse_retries = PARSE_RETRIES.value(parse_retries, {})
        cache_dir = flags.get("cache_dir")
        return cls(
            judge_urls=urls,
            judge_key=key,
            judge_model=flags.get("judge_model") or env.get("ECAC_JUDGE_MODEL", ""),
            vlm_urls=vlm_urls,
            vlm_key=vlm_key,
            vlm_model=flags.get("vlm_model") or env.get("ECAC_VLM_MODEL") or None,
            options={o.name: o.value(flags.get(o.name), env) for o in OPTIONS},
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            use_cache=not flags.get("no_cache", False),
            progress=not flags.get("no_progress", False),
            parse_retries=parse_retries,
        )

    # -- what the settings build ------------------------------------------------------------------------------

    def client_config(self, role: str = "judge") -> ClientConfig:
        """The judge's or the VLM's client config (raises :class:`ClientConfigError` when no model is given)."""
        if role == "vlm" and self.vlm_urls is not None:
            endpoint = Endpoint(self.vlm_urls, self.vlm_model or self.judge_model, self.vlm_key, "vlm")
        else:
            model = (self.vlm_model if role == "vlm" else None) or self.judge_model
            endpoint = Endpoint(self.judge_urls, model, self.judge_key, "judge")
        values = dict(self.options)
        max_side = values.pop("image_max_side")
        structured = values.pop("structured_output") == "auto"
        return ClientConfig(endpoint, image=ImageRule(max_side=max_side), structured_output=structured, **values)

    @cached_property
    def cache(self) -> ResponseCache | None:
        """The response cache, opened (and checked writable) once; None with ``--no-cache``."""
        return ResponseCache.in_dir(self.cache_dir) if self.use_cache else None

    def __getstate__(self) -> dict[str, Any]:
        # Picklable (the trainer's reward functions hold settings): the open cache is dropped and reopened on use.
        state = dict(self.__dict__)
        state.pop("cache", None)
        return state
