"""Export a session: the edit pasted back into the photo, the aligned crop, the edited crop, a labelled
comparison grid and the work file (`chunky.workfile`), all made from the session's current state.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chunky.align import paste_back
from chunky.compositing import soft_composite
from chunky.config import whole
from chunky.device import autocast
from chunky.errors import InvalidInputError
from chunky.grid import as_slide, comparison_grid
from chunky.images import resize_images, resize_uint8, tensor_to_uint8, uint8_to_tensor
from chunky.inversion import render_codes, select_codes, space_of
from chunky.metrics import l2_distance, lpips_distance
from chunky.preservation import Preservation
from chunky.workfile import write_work

log = logging.getLogger(__name__)
TILE_RANGE = (64, 1024)  # grid cell side, px
BACK_PROJECTIONS = 12  # iterations of `render_at`'s correction (each a downsample and an upsample)
ONE_CODE_EDIT = "same edit, one W+ code"  # the grid column of the edit applied to the global W+ baseline


@dataclass(frozen=True)
class Export:
    """Attributes: files (written, in a fixed order), grid ([H, W, 3] uint8, the comparison grid), preservation
    (how local the edit is, as written to preservation.json; None without an edit), size (the side the result
    was pasted back at) and render_seconds (the high-resolution render's time; 0 without one)."""

    files: list[Path]
    grid: np.ndarray
    preservation: Preservation | None = None
    size: int = 0
    render_seconds: float = 0.0


def grid_columns(session, *, captions: bool = False, perceptual=None) -> list[tuple[str, np.ndarray]]:
    """(label, [S, S, 3] uint8) columns: the photo, each global baseline, chunky's first inversion, what the
    page shows now ("edited" with an edit) and, with an edit and the global W+ baseline, the same edit of that
    one code. With ``captions``, each label after the photo carries its L2 (and LPIPS when ``perceptual`` is
    given) against the photo, at 256 px, and each edit how much of the outside of the edited segments changed
    (`chunky.preservation`)."""
    state = session.state
    session.require_result()
    photo = session.target_image
    columns = [("photo", photo)]
    columns += [(label, tensor_to_uint8(result.composite)) for label, result in state.baselines]
    columns.append(("chunky, as first inverted", tensor_to_uint8(state.first_composite)))
    columns.append(("now" if state.edit is None else "edited", session.display()))  # after refine, transfer ...
    one_code = session.global_edit()
    if one_code is not None:
        columns.append((ONE_CODE_EDIT, one_code))
    if not captions:
        return columns
    reference = uint8_to_tensor(photo)
    out = [columns[0]]
    for label, image in columns[1:]:
        tensor = uint8_to_tensor(image)
        text = f"L2 {float(l2_distance(tensor, reference)[0]):.4f}"
        if perceptual is not None:
            with torch.no_grad():
                text += f", LPIPS {float(lpips_distance(tensor, reference, perceptual)[0]):.3f}"
        if label == "edited" and session.state.edit is not None:
            text += f"; outside its segments {session.preservation().outside_changed_share:.1%} changed"
        if label == ONE_CODE_EDIT:
            text += f"; outside the segments {session.global_preservation()[1].outside_changed_share:.1%} changed"
        out.append((f"{label} ({text})", image))
    return out


def export_session(
    session,
    folder: str | Path,
    *,
    tile: int = 256,
    captions: bool = False,
    slide: bool = False,
    high_resolution: bool = False,
    perceptual=None,
    identity=None,
) -> Export:
    """Write the session's current state to ``folder`` (created): ``pasted_back.png`` (the result in the
    full-resolution photo), ``aligned_crop.png``, ``edited.png`` (what the page shows), ``comparison.png``
    (the grid, ``tile`` px per cell; with ``slide``, centred on a 16:9 white canvas), ``work.pt`` (re-openable)
    and, with an edit, ``preservation.json`` (how local it is: `chunky.preservation`, with LPIPS and identity
    when ``perceptual`` and ``identity`` are given). With ``high_resolution``, the result is rendered again at
    `full_size` (`render_at`) for ``pasted_back.png``, the grid's last chunky column and ``edited_<N>px.png``
    (unless the face is no larger than the shown picture); the shown ``edited.png`` stays as it is."""
    tile = whole("the grid tile size", tile, *TILE_RANGE)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shown = session.display()
    if shown is None:
        raise InvalidInputError("Run the inversion first (step 3: Invert); there is nothing to export yet.")
    columns = grid_columns(session, captions=captions, perceptual=perceptual)
    best, seconds = shown, 0.0
    size = full_size(session) if high_resolution else shown.shape[0]
    if size > shown.shape[0]:  # (a face no larger than the work size: exported as shown)
        start = time.perf_counter()
        best = render_at(session, size)
        seconds = time.perf_counter() - start
        at = len(columns) - (2 if columns[-1][0].startswith(ONE_CODE_EDIT) else 1)  # "now" / "edited"
        columns[at] = (f"{columns[at][0]}, {best.shape[0]} px", best)
    grid = comparison_grid([[image for _, image in columns]], [label for label, _ in columns], cell=tile)
    grid = as_slide(grid) if slide else grid
    images = {
        "pasted_back.png": paste_back(best, session.aligned),
        "aligned_crop.png": session.aligned.crop,
        "edited.png": shown,
        "comparison.png": grid,
    }
    if best is not shown:
        images[f"edited_{best.shape[0]}px.png"] = best
    files = []
    for name, image in images.items():
        Image.fromarray(image).save(folder / name)
        files.append(folder / name)
    files.append(write_work(session, folder / "work.pt"))
    figures = session.preservation(perceptual=perceptual, identity=identity)
    if figures is not None:
        edit = {"strengths": session.strengths(), "segments": list(session.state.targets)}
        (folder / "preservation.json").write_text(json.dumps(edit | figures.to_dict(), indent=1))
        files.append(folder / "preservation.json")
    return Export(files, grid, figures, best.shape[0], seconds)


def full_size(session) -> int:
    """The side a high-resolution export renders at: the smallest power of two that holds the face as large as
    it is in the photo (the aligned crop's side in photo pixels), at most the generator's size and at least
    the work size."""
    scale = float(np.sqrt(abs(np.linalg.det(session.aligned.matrix[:, :2]))))  # crop px per photo px
    in_photo = session.aligned.size / max(scale, 1e-6)
    size = session.size
    while size < session.editor.generator.size and size < in_photo:
        size *= 2
    return size


@torch.no_grad()
def render_at(session, size: int) -> np.ndarray:
    """[size, size, 3] uint8: what the page shows, at ``size`` px with the generator's own detail.

    Every projected segment's code (edited, when an edit is on) is rendered through its generator at ``size``
    and composited with the segments' masks scaled up (bilinear) over the aligned crop at that size. The codes
    were fitted at the work size only (their rows above it never were: such a render alone drifts in colour,
    2.8x the error on FFHQ), so only its detail is kept: iterative back-projection moves the render until its
    area-downsampled version is the shown picture (within a grey level), with smooth (bilinear) corrections.
    Pixels of kept segments are the photo's. A transfer's Poisson stitching is not redone."""
    state = session.state
    result = session.require_result()
    edit = state.edit
    codes = result.codes if edit is None else edit.codes
    generators = result.generators if edit is None else edit.generators
    masks = result.masks if edit is None or edit.masks is None else edit.masks
    G, device = session.editor.generator, session.editor.device
    target = uint8_to_tensor(resize_uint8(session.aligned.crop, size)).to(device)
    renders = target.repeat(masks.shape[0], 1, 1, 1)  # a kept segment's "render" is the photo
    with autocast(session.editor.precision, device):
        for row, k in enumerate(result.projected):
            code = select_codes(codes, slice(row, row + 1))
            renders[k] = render_codes(generators.get(k, G), code, space_of(codes), size)[0].float()
    dilate_px = round(result.config.dilate_px * size / masks.shape[-1])
    big_masks = _scaled(masks.to(device), size)
    rendered = soft_composite(renders, big_masks, target, keep=result.keep, dilate_px=dilate_px)
    shown = uint8_to_tensor(session.display()).to(device)
    out = rendered
    for _ in range(BACK_PROJECTIONS):  # keep the render's detail, move its work-size version onto the shown one
        out = out + _scaled(shown - resize_images(out, shown.shape[-1]), size)
    kept = big_masks[result.keep].sum(dim=0, keepdim=True) >= 1 - 1e-6 if result.keep else torch.zeros_like(out[:, :1])
    return tensor_to_uint8(torch.where(kept.bool(), target, out))


def _scaled(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, h, w] scaled up to [N, C, size, size], bilinear (a partition of masks stays one)."""
    if images.shape[-1] == size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class FolderBudget:
    """Folders under one root with an age and a byte budget: exports (a fresh folder each) or the web server's
    uploads. The root is made private at start (``tempfile.mkdtemp``: a new folder with mode 0700, inside
    ``parent`` or the system's temporary folder), so no other user and no pre-existing path or symlink is
    involved. `prune` deletes folders older than ``max_age_s``, then the oldest while the root holds more than
    ``max_bytes``; it never follows a symlink, and does nothing when the root itself is one."""

    def __init__(
        self,
        *,
        max_age_s: float = 3600,
        max_bytes: int = 2 << 30,
        root: Path | None = None,
        prefix: str = "chunky-exports-",
        parent: str | Path | None = None,
    ):
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.max_age_s, self.max_bytes = max_age_s, max_bytes

    def keep_pruned(self, interval_s: float = 60.0) -> threading.Thread:
        """Prune every ``interval_s`` seconds in a daemon thread (a disk budget that holds between exports)."""

        def loop():
            while True:
                time.sleep(interval_s)
                try:
                    self.prune()
                except OSError as error:  # a folder vanished meanwhile, or the disk is read-only: try again later
                    log.warning("pruning %s failed: %s", self.root, error)

        thread = threading.Thread(target=loop, name=f"prune {self.root.name}", daemon=True)
        thread.start()
        return thread

    def new(self) -> Path:
        """A new empty folder (after pruning)."""
        self.prune()
        return Path(tempfile.mkdtemp(prefix="export-", dir=self.root))

    def prune(self) -> None:
        """Delete folders past the age limit, then the oldest until the total is under the byte budget."""
        if self.root.is_symlink() or not self.root.is_dir():
            return
        folders = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()), key=lambda p: p.stat().st_mtime
        )
        now, sizes = time.time(), {p: _folder_bytes(p) for p in folders}
        total = sum(sizes.values())
        for folder in folders:
            if now - folder.stat().st_mtime > self.max_age_s or total > self.max_bytes:
                shutil.rmtree(folder, ignore_errors=True)
                total -= sizes[folder]


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
