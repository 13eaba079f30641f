"""Make lmms-eval find the ECAC tasks with no ``--include_path``.

lmms-eval (checked on the versions in ``TESTED_LMMS_EVAL``) has no entry-point group for tasks, and its
``LMMS_EVAL_PLUGINS`` variable is applied only after the TaskManager is built. It does load the
``lmms_eval.models`` entry-point group when ``lmms_eval.models`` is imported, which the evaluation CLI does
before it builds the TaskManager. This project registers :func:`register` there; it registers no model and
instead makes every ``TaskManager`` also index :data:`TASKS_DIR`, the task folder shipped inside this package.

The ``lmms-eval tasks ...`` subcommand never imports ``lmms_eval.models``; there, pass
``--include-path "$(python -m ecac_bench.lmms_plugin)"``.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

TASKS_DIR = Path(__file__).parent / "lmms_tasks"
TESTED_LMMS_EVAL = ("0.7.3",)
_MARK = "_ecac_tasks_dir"


class LmmsEvalIncompatible(RuntimeError):
    """The installed lmms-eval changed the TaskManager API this plugin hooks into."""


def _as_list(include_path: str | list[str] | None) -> list[str]:
    if include_path is None:
        return []
    return [include_path] if isinstance(include_path, str) else list(include_path)


def _with_ecac_tasks(include_path: str | list[str] | None) -> list[str]:
    """``include_path`` plus TASKS_DIR, unless the caller already includes that folder (e.g. via a symlink)."""
    paths = _as_list(include_path)
    if any(os.path.realpath(p) == os.path.realpath(TASKS_DIR) for p in paths):
        return paths
    return [*paths, str(TASKS_DIR)]


def install_task_path() -> None:
    """Patch ``lmms_eval.tasks.TaskManager`` so that it always indexes TASKS_DIR; idempotent.

    Raises :class:`LmmsEvalIncompatible` when ``TaskManager.initialize_tasks`` no longer takes
    ``include_path``: a new lmms-eval broke discovery, and ``--include_path`` is the fallback.
    """
    from lmms_eval.tasks import TaskManager

    original = getattr(TaskManager, "initialize_tasks", None)
    if getattr(original, _MARK, None) is not None:
        return
    if original is None or "include_path" not in inspect.signature(original).parameters:
        raise LmmsEvalIncompatible(
            f"lmms-eval {version('lmms-eval')}: TaskManager.initialize_tasks(include_path=...) not found; "
            f"ECAC task discovery is tested with lmms-eval {', '.join(TESTED_LMMS_EVAL)}. "
            f"Pass --include_path {TASKS_DIR} instead."
        )

    @functools.wraps(original)
    def initialize_tasks(self: Any, include_path: str | list[str] | None = None, *args: Any, **kwargs: Any):
        return original(self, _with_ecac_tasks(include_path), *args, **kwargs)

    setattr(initialize_tasks, _MARK, str(TASKS_DIR))
    TaskManager.initialize_tasks = initialize_tasks


def register() -> list[Any]:
    """Entry point of the ``lmms_eval.models`` group: add the ECAC tasks; register no model."""
    installed = version("lmms-eval")
    if installed not in TESTED_LMMS_EVAL:
        warnings.warn(
            f"ecac-bench task discovery is tested with lmms-eval {', '.join(TESTED_LMMS_EVAL)}, found {installed}; "
            f"if the ecac tasks are missing, pass --include_path {TASKS_DIR}",
            stacklevel=2,
        )
    install_task_path()
    return []


if __name__ == "__main__":
    print(TASKS_DIR)
