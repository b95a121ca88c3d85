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
from chunky.config import whole
from chunky.errors import InvalidInputError
from chunky.grid import as_slide, comparison_grid
from chunky.images import tensor_to_uint8, uint8_to_tensor
from chunky.metrics import l2_distance, lpips_distance
from chunky.preservation import Preservation
from chunky.workfile import write_work

log = logging.getLogger(__name__)
TILE_RANGE = (64, 1024)  # grid cell side, px
ONE_CODE_EDIT = "same edit, one W+ code"  # the grid column of the edit applied to the global W+ baseline


@dataclass(frozen=True)
class Export:
    """Attributes: files (written, in a fixed order), grid ([H, W, 3] uint8, the comparison grid), preservation
    (how local the edit is, as written to preservation.json; None without an edit)."""

    files: list[Path]
    grid: np.ndarray
    preservation: Preservation | None = None


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
    perceptual=None,
    identity=None,
) -> Export:
    """Write the session's current state to ``folder`` (created): ``pasted_back.png`` (the result in the
    full-resolution photo), ``aligned_crop.png``, ``edited.png`` (what the page shows), ``comparison.png``
    (the grid, ``tile`` px per cell; with ``slide``, centred on a 16:9 white canvas), ``work.pt`` (re-openable)
    and, with an edit, ``preservation.json`` (how local it is: `chunky.preservation`, with LPIPS and identity
    when ``perceptual`` and ``identity`` are given)."""
    tile = whole("the grid tile size", tile, *TILE_RANGE)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shown = session.display()
    if shown is None:
        raise InvalidInputError("Run the inversion first (step 3: Invert); there is nothing to export yet.")
    columns = grid_columns(session, captions=captions, perceptual=perceptual)
    grid = comparison_grid([[image for _, image in columns]], [label for label, _ in columns], cell=tile)
    grid = as_slide(grid) if slide else grid
    images = {
        "pasted_back.png": paste_back(shown, session.aligned),
        "aligned_crop.png": session.aligned.crop,
        "edited.png": shown,
        "comparison.png": grid,
    }
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
    return Export(files, grid, figures)


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
