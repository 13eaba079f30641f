"""The LLM options of the subcommands that call a model (:class:`ecac_bench.llm.Settings`), and what their reports
record about the calls."""

from __future__ import annotations

import argparse

from ecac_bench.llm import LLMClient, Settings


def add_llm_args(parser: argparse.ArgumentParser, *, vlm: bool = False, parse_retries: int | None = None) -> None:
    """The judge endpoint and client options; the VLM endpoint when the command has one; ``--parse-retries`` with
    the command's default when it parses answers."""
    Settings.register_argparse_arguments(parser, vlm=vlm, parse_retries=parse_retries)


def llm_settings(args: argparse.Namespace) -> Settings:
    """The validated settings (a bad value is a :class:`~ecac_bench.errors.ClientConfigError`: exit code 2)."""
    return Settings.from_argparse(args)


def llm_report_fields(client: LLMClient) -> dict[str, object]:
    """What a report records about the judge and its calls (never the key): the endpoint's public URL(s), model,
    client options, sampling parameters, rate limits, image preparation and structured-output support; the usage
    counters; the cache file."""
    return {
        "judge": client.describe(),
        "usage": client.stats.to_dict(),
        "cache": str(client.cache.path) if client.cache is not None else None,
    }
