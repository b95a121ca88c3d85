"""Make torchvision importable when its compiled ops do not match the installed torch.

On machines that pair the CPU build of torch 2.13 with the PyPI build of torchvision 0.28 (a CUDA
build), `import torchvision` fails with ``operator torchvision::nms does not exist``. lpips and
facexlib import torchvision, so they fail too. `ensure_torchvision()` registers the two missing
operator schemas with a plain-torch CPU kernel, re-imports torchvision and marks its ops available.
Where torchvision imports normally it does nothing.
"""

from __future__ import annotations

import logging
import sys

import torch

log = logging.getLogger(__name__)

_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_library: torch.library.Library | None = None  # keeps the registered ops alive


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression in plain torch.

    Args:
        boxes: [N, 4] boxes as (x1, y1, x2, y2).
        scores: [N] scores.
        iou_threshold: boxes overlapping a kept box with IoU above this are dropped.

    Returns:
        int64 indices of the kept boxes, by decreasing score.
    """
    boxes = boxes.float()
    order = torch.argsort(scores.float(), descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for rank, i in enumerate(order.tolist()):
        if suppressed[rank]:
            continue
        keep.append(i)
        rest = order[rank + 1 :]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter).clamp(min=1e-12)
        suppressed[rank + 1 :] |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _register_missing_ops() -> None:
    global _library
    if _library is not None:
        return
    _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 - schema-only library
    for name in ("nms", "qnms"):
        _library.define(name + _NMS_SCHEMA)
        _library.impl(name, nms_reference, "CPU")


def ensure_torchvision() -> bool:
    """Import torchvision, repairing the missing-operator failure described above.

    Returns:
        True when the repair was needed and applied, False when torchvision imported as is.
    """
    try:
        import torchvision  # noqa: F401

        return False
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _register_missing_ops()
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True
    log.info("torchvision's compiled ops do not match torch %s; using plain-torch nms", torch.__version__)
    return True
