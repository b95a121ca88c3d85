"""The one on-disk format of a user's work (``work.pt``), written and read by the app and the CLI alike.

A work file holds what reproduces the screen: the photo (PNG bytes) and how its aligned crop was made,
the named masks, the inversion (codes, renders, target, config, fine-tuned generator weights), the edit
(strengths and target segments; its codes are recomputed on opening and must match), the global
baselines and the versions that wrote it. It is a plain dict of tensors, numbers and strings, read with
``torch.load(..., weights_only=True)``: opening a file cannot run code.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chunky.align import AlignedFace, EncodedPhoto
from chunky.errors import ChunkyError, InvalidInputError
from chunky.images import MAX_FILE_BYTES, read_image
from chunky.records import generator_fingerprint, result_from_dict, result_to_dict
from chunky.segmentation import Segmentation
from chunky.session import Session, State
from chunky.workcheck import WorkFileError, check_work

FORMAT = "chunky-work"
VERSION = 1
MAX_WORK_BYTES = 2 << 30  # a work file with fine-tuned 1024 px generators can be large, but not unbounded


def write_work(session, path: str | Path) -> Path:
    """Write ``session``'s current state (a `chunky.session.Session`) to ``path`` atomically."""
    state, aligned = session.state, session.aligned
    data = {
        "format": FORMAT,
        "version": VERSION,
        "torch": str(torch.__version__),
        "generator": generator_fingerprint(session.editor.generator),
        "photo_png": _photo_bytes(aligned),
        "matrix": torch.tensor(aligned.matrix),
        "crop": torch.from_numpy(np.array(aligned.crop)),
        "landmarks": None if aligned.landmarks is None else torch.tensor(np.asarray(aligned.landmarks, np.float64)),
        "skipped": aligned.skipped,
        "note": aligned.note,
        "names": list(state.names),
        "masks": state.segmentation.masks.cpu(),
        "automatic": {"names": list(session.automatic.names), "masks": session.automatic.masks.cpu()},
        "labels": None if state.segmentation.labels is None else torch.from_numpy(np.array(state.segmentation.labels)),
        "result": None if state.result is None else result_to_dict(state.result),
        "strengths": dict(state.strengths),
        "targets": list(state.targets),
        "edited_codes": None if state.edit is None else state.edit.codes,
        "baselines": {label: result_to_dict(r) for label, r in state.baselines},
        "first_composite": state.first_composite,
    }
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        try:
            torch.save(data, f)
        except BaseException:
            Path(f.name).unlink(missing_ok=True)
            raise
    os.replace(f.name, path)
    return path


def read_work(editor, path: str | Path):
    """A `chunky.session.Session` continuing the work saved in ``path`` (for ``editor``'s generator)."""
    name = Path(path).name
    data = _load(Path(path))
    if data.get("generator") != generator_fingerprint(editor.generator):
        raise InvalidInputError(
            f"{name} was made with another generator than the one loaded here; open it where that model is loaded."
        )
    check_work(data, editor.generator, name=name)
    try:
        return _session(editor, data, name)
    except WorkFileError:
        raise
    except ChunkyError as error:  # a value the checks pass but a constructor refuses (a config setting, the photo)
        raise WorkFileError(f"{name}: {error}") from None


def _session(editor, data: dict, name: str):
    """The session a checked work file describes."""
    original = read_image(data["photo_png"], name="the photo in the work file")
    landmarks = data.get("landmarks")  # absent from files written before landmarks were kept
    aligned = AlignedFace(
        data["crop"].numpy(),
        data["matrix"].numpy(),
        original,
        landmarks=None if landmarks is None else landmarks.numpy(),
        skipped=data["skipped"],
        note=data["note"],
    ).compact()
    labels = None if data["labels"] is None else data["labels"].numpy()
    segmentation = Segmentation(tuple(data["names"]), data["masks"], labels)
    automatic = Segmentation(tuple(data["automatic"]["names"]), data["automatic"]["masks"])
    result = None if data["result"] is None else result_from_dict(data["result"])
    state = State(
        segmentation,
        result,
        baselines=tuple((k, result_from_dict(v)) for k, v in data["baselines"].items()),
        first_composite=data["first_composite"],
        action="open",
    )
    session = Session(editor, aligned, automatic, state)
    if data["strengths"]:
        session.set_edit(data["strengths"], data["targets"])
        session.history.clear()
        if not _same_codes(session.state.edit.codes, data["edited_codes"]):
            raise InvalidInputError(
                f"{name}: the edit does not reproduce with this model's directions "
                "(were they changed?); its strengths are loaded but the picture differs."
            )
    return session


def _load(path: Path) -> dict:
    if not path.is_file():
        raise InvalidInputError(f"The work file {path} does not exist.")
    if path.stat().st_size > MAX_WORK_BYTES:
        raise InvalidInputError(
            f"{path.name} is {path.stat().st_size >> 20} MiB; work files are at most {MAX_WORK_BYTES >> 30} GiB."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused, truncated or not a torch file at all
        raise InvalidInputError(
            f"{path.name} is not a chunky work file this code can read safely ({type(error).__name__})."
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidInputError(
            f"{path.name} is not a chunky work file (export one with 'Export' or `python -m chunky invert`)."
        )
    if data.get("version") != VERSION:
        raise InvalidInputError(
            f"{path.name} has work-file version {data.get('version')}; this chunky reads version {VERSION}."
        )
    return data


def _photo_bytes(aligned: AlignedFace) -> bytes:
    """The photo as a file `read_image` accepts again: the PNG kept in memory when it is within the reader's
    size limit, else encoded anew (PNG, or JPEG when even that is too large)."""
    if isinstance(aligned.original, EncodedPhoto) and len(aligned.original.png) <= MAX_FILE_BYTES:
        return aligned.original.png
    return _png_bytes(aligned.photo())


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    if buffer.tell() > MAX_FILE_BYTES:  # the photo passed the reader's limit once; a PNG of it can be larger
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _same_codes(a, b) -> bool:
    if isinstance(a, list) != isinstance(b, list):
        return False
    pairs = zip(a, b) if isinstance(a, list) else [(a, b)]
    return all(x.shape == y.shape and torch.equal(x.cpu(), y.cpu()) for x, y in pairs)
