"""Make the PyPI torchvision wheel importable next to a CPU-only torch.

PyPI ships only CUDA builds of torchvision for Linux x86_64. Next to ``torch==X+cpu`` its C++ extension
cannot load, and ``torchvision/_meta_registrations.py`` then fails at import time with
``RuntimeError: operator torchvision::nms does not exist`` because two of its ``register_fake``
decorators are not guarded by ``torchvision.extension._has_ops()`` like all the others. transformers,
``qwen_vl_utils`` and lmms-eval's ``qwen2_5_vl`` backend import torchvision, so that one error breaks them.

This module guards those two decorators the same way the file guards the rest, after which the pure-Python
parts (transforms, io) work and only ``torchvision.ops`` (which needs the missing C++ ops) stays unavailable.
It edits nothing when torchvision already imports, so it is a no-op on GPU machines and safe to re-run.

Run after installing (``make setup-dev`` does): ``python tools/fix_torchvision.py``. An environment fix for the
tests on CPU machines, not part of the installed package.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

_MARKER = "# ecac-bench: guarded, see tools/fix_torchvision.py in ecac-bench"
_UNGUARDED = (
    '@torch.library.register_fake("torchvision::nms")',
    '@torch.library.register_fake("torchvision::qnms")',
)


def _torchvision_imports() -> tuple[bool, str]:
    # A fresh interpreter: a failed import leaves half-initialised modules behind in this one.
    proc = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    return proc.returncode == 0, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def _meta_registrations_path() -> Path:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("torchvision is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "_meta_registrations.py"


def guard_source(source: str) -> str:
    """Return ``source`` with the unguarded fake registrations guarded on ``_has_ops()``."""
    for decorator in _UNGUARDED:
        guarded = f"@({decorator[1:]} if torchvision.extension._has_ops() else (lambda fn: fn))  {_MARKER}"
        source = source.replace(decorator + "\n", guarded + "\n")
    return source


def fix_torchvision() -> str:
    """Patch torchvision if (and only if) it fails to import; return what was done."""
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision not installed: nothing to do"
    ok, _ = _torchvision_imports()
    if ok:
        return "torchvision imports: nothing to do"
    path = _meta_registrations_path()
    source = path.read_text(encoding="utf-8")
    patched = guard_source(source)
    if patched == source:
        raise RuntimeError(f"{path}: torchvision fails to import and the known decorators were not found")
    # A new file renamed over the old one: installers such as uv hard-link site-packages files to their cache, and
    # writing in place would patch the cached wheel (and every environment made from it) too.
    tmp = path.with_name(path.name + ".ecac-tmp")
    tmp.write_text(patched, encoding="utf-8")
    os.replace(tmp, path)
    ok, error = _torchvision_imports()
    if not ok:
        raise RuntimeError(f"patched {path} but torchvision still fails to import: {error}")
    return f"patched {path}: torchvision imports (torchvision.ops stays unavailable without its C++ ops)"


if __name__ == "__main__":
    print(fix_torchvision())
