"""The caption viewer: a static, self-contained HTML page of per-image results (docs/viewer.md)."""

from ecac_bench.viewer.build import ViewerError, build_run_page, build_viewer

__all__ = ["ViewerError", "build_run_page", "build_viewer"]
