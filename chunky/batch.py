"""One edit over a folder of photos, for slides: each photo inverted, edited the same way, exported and measured.

`run_batch` writes, under ``out``: one folder per photo (the export of `chunky.export.export_session`, plus
``reconstruction.png``, ``figures.json`` and, with ``compare_global``, ``global_edit.png``), one summary grid
``summary.png`` (photo | reconstruction | edit [| one global code's edit], each row captioned with its
preservation figures) and one figures table ``summary.md`` / ``summary.json``. It is resumable: a photo whose
``figures.json`` exists is not inverted again. A photo that fails (no face, unreadable) is listed and skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from chunky.config import InversionConfig
from chunky.errors import ChunkyError, InvalidInputError
from chunky.export import export_session
from chunky.grid import comparison_grid
from chunky.images import read_image, tensor_to_uint8
from chunky.preservation import Preservation
from chunky.session import Session

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
SUMMARY_TILE = 256


def photos_in(folder: Path) -> list[Path]:
    """The photos directly in ``folder`` (by suffix), sorted by name."""
    if not Path(folder).is_dir():
        raise InvalidInputError(f"{folder} is not a folder of photos.")
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())


def run_batch(
    editor,
    photos: Sequence[Path],
    out: Path,
    *,
    config: InversionConfig,
    strengths: dict[str, float],
    segments: Sequence[str] = (),
    compare_global: bool = False,
    progress: Callable[[int, int, str], object] | None = None,
) -> dict:
    """Invert, edit, export and measure each photo; write the summary grid and table.

    Args:
        editor: a `chunky.editor.ChunkyEditor` (its cache, if any, answers repeated inversions at once).
        photos: photo files; each gets the folder ``out / <file stem>``.
        config: the inversion settings (e.g. ``editor.preset("preview")``).
        strengths: the edit, direction name -> slider value (at least one).
        segments: the segments it applies to (empty: every projected one).
        compare_global: also invert one global W+ code per photo and apply the same edit to it.
        progress: ``progress(done, total, photo name)`` before each photo and once at the end.

    Returns:
        {"photos": {name: figures}, "skipped": [names already done], "errors": {name: message}}.
    """
    if not strengths:
        raise InvalidInputError("Give the edit to apply to every photo, e.g. --edit smile=1.5.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"photos": {}, "skipped": [], "errors": {}}
    for done, photo in enumerate(photos):
        if progress is not None:
            progress(done, len(photos), photo.name)
        folder = out / photo.stem
        finished = json.loads((folder / "figures.json").read_text()) if (folder / "figures.json").is_file() else {}
        if finished and (not compare_global or "global W+" in finished):
            summary["photos"][photo.name] = finished
            summary["skipped"].append(photo.name)
            continue
        try:
            figures = edit_one(editor, photo, folder, config, strengths, segments, compare_global)
        except ChunkyError as error:
            summary["errors"][photo.name] = str(error)
            continue
        summary["photos"][photo.name] = figures
    if progress is not None:
        progress(len(photos), len(photos), "")
    write_summary(out, summary, compare_global)
    return summary


def edit_one(editor, photo: Path, folder: Path, config, strengths, segments, compare_global: bool) -> dict:
    """One photo: inverted, edited, exported to ``folder``; its figures written last (``figures.json``)."""
    session = Session.start(editor, read_image(photo, name=photo.name))
    session.invert(config, baselines=compare_global)
    session.set_edit(strengths, list(segments))
    identity = editor.identity()
    done = export_session(session, folder, identity=identity)
    Image.fromarray(tensor_to_uint8(session.state.result.composite)).save(folder / "reconstruction.png")
    figures = {"chunky": done.preservation.to_dict()}
    if compare_global:
        global_edit, global_figures = session.global_preservation(identity=identity)
        Image.fromarray(global_edit).save(folder / "global_edit.png")
        figures["global W+"] = global_figures.to_dict()
    (folder / "figures.json").write_text(json.dumps(figures, indent=1))
    return figures


def write_summary(out: Path, summary: dict, compare_global: bool) -> None:
    """``summary.png`` (one row per finished photo), ``summary.md`` and ``summary.json``."""
    names = sorted(summary["photos"])
    labels = ["photo", "reconstruction", "edit (chunky)"] + (["same edit, one W+ code"] if compare_global else [])
    rows, captions = [], []
    for name in names:
        folder = out / Path(name).stem
        files = ["aligned_crop.png", "reconstruction.png", "edited.png"]
        files += ["global_edit.png"] if compare_global else []
        rows.append([np.asarray(Image.open(folder / f).convert("RGB")) for f in files])
        figures = summary["photos"][name]
        row = [name, "", Preservation.from_dict(figures["chunky"]).caption()]
        if compare_global:
            row.append(Preservation.from_dict(figures["global W+"]).caption())
        captions.append(row)
    if rows:
        grid = comparison_grid(rows, labels, cell=SUMMARY_TILE, captions=captions)
        Image.fromarray(grid).save(out / "summary.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(table(summary) + "\n")


def table(summary: dict) -> str:
    """The figures of every photo as a Markdown table (one row per photo and method), errors listed below."""
    lines = [
        "| photo | method | outside: pixels changed | outside: PSNR (dB) | outside: max change | "
        "inside: mean change | identity to reconstruction | identity to edit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(summary["photos"]):
        for method, f in summary["photos"][name].items():
            psnr = "identical" if f["outside_psnr_db"] is None else f"{f['outside_psnr_db']:.1f}"
            identity = [_number(f.get("identity_reconstruction")), _number(f.get("identity_edit"))]
            lines.append(
                f"| {name} | {method} | {f['outside_changed_share']:.1%} | {psnr} | {f['outside_max_change']:.0f} | "
                f"{f['inside_mean_change']:.1f} | {identity[0]} | {identity[1]} |"
            )
    for name, message in sorted(summary["errors"].items()):
        lines.append(f"\nSkipped {name}: {message}")
    return "\n".join(lines)


def _number(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
