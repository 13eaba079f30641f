"""The torchvision guard: CUDA torchvision wheels become importable next to a CPU-only torch."""

from __future__ import annotations

import subprocess
import sys

from tools.fix_torchvision import guard_source

UNGUARDED = """@register_meta("roi_pool")
def meta_roi_pool(input, rois, spatial_scale, pooled_height, pooled_width):
    pass


@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    pass


@torch.library.register_fake("torchvision::qnms")
def meta_qnms(dets, scores, iou_threshold):
    pass
"""


def test_guards_exactly_the_two_unguarded_fake_registrations() -> None:
    guarded = guard_source(UNGUARDED)
    assert guarded.count("if torchvision.extension._has_ops() else (lambda fn: fn)") == 2
    assert '@register_meta("roi_pool")\n' in guarded
    assert '@(torch.library.register_fake("torchvision::nms") if' in guarded
    assert guard_source(guarded) == guarded  # idempotent
    compile(guarded, "_meta_registrations.py", "exec")  # still valid Python


def test_torchvision_and_the_qwen_stack_import_in_this_environment() -> None:
    code = "import torchvision, qwen_vl_utils; from transformers import AutoProcessor; print(torchvision.__version__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, (
        "on a CPU-only torch run `python tools/fix_torchvision.py` after installing "
        f"(docs/lmms_eval.md):\n{proc.stderr[-2000:]}"
    )
