"""Checks of a loaded work file (`chunky.workfile`) before anything is built from it.

A work file comes from a visitor's upload, so every value is checked before it is used: each key's type, each
tensor's dtype and shape against the others and against the model's limits, that each tensor's storage holds
its elements (a tensor saved as a stride-0 or overlapping view would be materialised as gigabytes from a few
bytes), that numbers are finite and within their range, and that the indices name existing segments. The first
problem is named in an `InvalidInputError` ("work.pt: masks are 8x1x8000x8000, but the crop is 64x64"). Nothing
here allocates more than the file's own tensors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch

from chunky.errors import InvalidInputError
from chunky.generator import Generator
from chunky.inversion import InversionResult
from chunky.segmentation import MAX_SEGMENTS

MAX_HISTORY = 100_000  # loss values kept per inversion (steps of every phase together)
REQUIRED_RESULT_FIELDS = [  # the fields every version of the format wrote; later ones have defaults
    f.name
    for f in dataclasses.fields(InversionResult)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
]


class WorkFileError(InvalidInputError):
    """A work file's content is not what `chunky.workfile.write_work` writes."""


def check_work(data: Mapping, G: Generator, *, name: str = "work.pt") -> None:
    """Raise `WorkFileError` naming the first problem of ``data`` (a loaded work file) for generator ``G``.

    Args:
        data: the dict `torch.load` gave (format and version already checked).
        G: the generator the work will be opened with (its size, W+ rows and style widths are the limits).
        name: the file's name, for the messages.
    """
    check = _Checker(name)
    check.keys(data, "the file", ["photo_png", "matrix", "crop", "skipped", "note", "names", "masks", "automatic"])
    check.keys(data, "the file", ["labels", "result", "strengths", "targets", "edited_codes", "baselines"])
    check.keys(data, "the file", ["first_composite"])
    if not isinstance(data["photo_png"], bytes):
        check.fail(f"the photo must be image file bytes (PNG or JPEG), got {type(data['photo_png']).__name__}")
    check.kind(data["skipped"], bool, "skipped")
    check.kind(data["note"], str, "note")
    crop = check.tensor(data["crop"], "crop", torch.uint8, 3)
    size = crop.shape[0]
    if crop.shape[1:] != (size, 3) or not 8 <= size <= G.size:
        check.fail(f"the crop is {_shape(crop)}; expected S x S x 3 with S from 8 to the model's {G.size} px")
    matrix = check.tensor(data["matrix"], "matrix", torch.float64, 2)
    if matrix.shape != (2, 3):
        check.fail(f"matrix is {_shape(matrix)}; expected the 2 x 3 transform from the photo to the crop")
    check.finite(matrix, "matrix")
    if abs(torch.linalg.det(matrix[:, :2]).item()) < 1e-12:
        check.fail("matrix cannot be inverted (the crop could not be pasted back into the photo)")
    if data.get("landmarks") is not None:
        landmarks = check.tensor(data["landmarks"], "landmarks", torch.float64, 2)
        if landmarks.shape != (5, 2):
            check.fail(f"landmarks are {_shape(landmarks)}; expected five (x, y) points, 5x2")
        check.finite(landmarks, "landmarks")
    names = check.names(data["names"], "names")
    check.masks(data["masks"], "masks", len(names), size)
    automatic = data["automatic"]
    check.keys(automatic, "automatic", ["names", "masks"])
    check.masks(automatic["masks"], "automatic masks", len(check.names(automatic["names"], "automatic names")), size)
    if data["labels"] is not None:
        labels = check.tensor(data["labels"], "labels", torch.int64, 2)
        if labels.shape != (size, size):
            check.fail(f"labels are {_shape(labels)}, but the crop is {size}x{size}")
        check.within(labels, "labels", 0, 255)
    if data["result"] is not None:
        result = check.result(data["result"], "result", G, len(names), size)
        if not isinstance(data["strengths"], dict) or not all(isinstance(k, str) for k in data["strengths"]):
            check.fail("strengths must map direction names to numbers")
        for direction, value in data["strengths"].items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                check.fail(f"the strength of {direction!r} must be a finite number, got {value!r}")
        targets = data["targets"]
        if not isinstance(targets, list) or not set(targets) <= set(names):
            check.fail(f"targets must be segment names of this work ({', '.join(names)}), got {targets!r}")
        if data["edited_codes"] is not None:
            check.codes(data["edited_codes"], "edited codes", G, len(result["projected"]))
    elif data["strengths"] or data["edited_codes"] is not None:
        check.fail("it holds an edit but no inversion to edit")
    if not isinstance(data["baselines"], dict):
        check.fail("baselines must map labels to inversions")
    for label, baseline in data["baselines"].items():
        check.result(baseline, f"the baseline {label!r}", G, 1, size)
    if data["first_composite"] is not None:
        check.image(data["first_composite"], "the first composite", 1, size)


class _Checker:
    """Check helpers that raise `WorkFileError` with the file's name in front of the message."""

    def __init__(self, name: str):
        self.name = name

    def fail(self, problem: str):
        raise WorkFileError(f"{self.name}: {problem}. Open a work.pt that chunky exported, unchanged.")

    def keys(self, data, where: str, keys: list[str]) -> None:
        if not isinstance(data, Mapping):
            self.fail(f"{where} must be a dictionary, got {type(data).__name__}")
        missing = [k for k in keys if k not in data]
        if missing:
            self.fail(f"{where} lacks {', '.join(repr(k) for k in missing)}")

    def kind(self, value, expected: type, where: str) -> None:
        if not isinstance(value, expected):
            self.fail(f"{where} must be a {expected.__name__}, got {type(value).__name__}")

    def tensor(self, value, where: str, dtype: torch.dtype, dims: int) -> torch.Tensor:
        """``value`` as a tensor of ``dtype`` with ``dims`` dimensions whose storage holds its elements."""
        if not isinstance(value, torch.Tensor):
            self.fail(f"{where} must be a tensor, got {type(value).__name__}")
        if value.dtype != dtype:
            self.fail(f"{where} must be {dtype}, got {value.dtype}")
        if value.dim() != dims:
            self.fail(f"{where} must have {dims} dimensions, got {value.dim()} ({_shape(value)})")
        if value.device.type != "cpu" or value.is_sparse:
            self.fail(f"{where} must be a dense tensor")
        if not _storage_holds(value):
            self.fail(
                f"{where} ({_shape(value)}) is a view that repeats or overruns its stored data "
                f"({value.untyped_storage().nbytes()} bytes stored for {value.numel() * value.element_size()})"
            )
        return value

    def finite(self, value: torch.Tensor, where: str) -> None:
        if not bool(torch.isfinite(value).all()):
            self.fail(f"{where} holds values that are not finite numbers (NaN or infinity)")

    def within(self, value: torch.Tensor, where: str, low: float, high: float) -> None:
        if value.numel() and (float(value.min()) < low or float(value.max()) > high):
            self.fail(f"{where} must lie in [{low}, {high}], got [{float(value.min()):.3g}, {float(value.max()):.3g}]")

    def names(self, value, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
            self.fail(f"{where} must be a list of segment names")
        if not 1 <= len(value) <= MAX_SEGMENTS or len(set(value)) != len(value):
            self.fail(f"{where} must be 1 to {MAX_SEGMENTS} different names, got {len(value)}")
        return value

    def masks(self, value, where: str, count: int, size: int) -> torch.Tensor:
        masks = self.tensor(value, where, torch.float32, 4)
        if masks.shape != (count, 1, size, size):
            self.fail(f"{where} are {_shape(masks)}, but the work has {count} segments on a {size}x{size} crop")
        self.finite(masks, where)
        self.within(masks, where, 0.0, 1.0)
        return masks

    def image(self, value, where: str, count: int, size: int) -> torch.Tensor:
        image = self.tensor(value, where, torch.float32, 4)
        if image.shape != (count, 3, size, size):
            self.fail(f"{where} is {_shape(image)}; expected {count}x3x{size}x{size}")
        self.finite(image, where)
        return image

    def codes(self, value, where: str, G: Generator, count: int) -> None:
        """W [P, D], W+ [P, n_latent, D] or S (one [P, C_l] per modulated layer) codes of ``count`` segments."""
        if isinstance(value, list):
            widths = [layer.modulation.weight.shape[0] for _, layer in G.modulated_layers(None)]
            if len(value) != len(widths):
                self.fail(f"{where} are style codes for {len(value)} layers; this model has {len(widths)}")
            for index, (part, width) in enumerate(zip(value, widths)):
                part = self.tensor(part, f"{where} (layer {index})", torch.float32, 2)
                if part.shape != (count, width):
                    self.fail(f"{where} (layer {index}) are {_shape(part)}; expected {count}x{width}")
                self.finite(part, where)
            return
        codes = self.tensor(value, where, torch.float32, value.dim() if isinstance(value, torch.Tensor) else 2)
        if codes.shape not in ((count, G.style_dim), (count, G.n_latent, G.style_dim)):
            self.fail(
                f"{where} are {_shape(codes)}; expected {count}x{G.style_dim} (W) or "
                f"{count}x{G.n_latent}x{G.style_dim} (W+) for the {count} projected segments"
            )
        self.finite(codes, where)

    def result(self, value, where: str, G: Generator, count: int, size: int) -> Mapping:
        """An inversion (`chunky.records.result_to_dict`) of ``count`` segments on a ``size`` crop."""
        self.keys(value, where, REQUIRED_RESULT_FIELDS)
        for key in ("loss", "seconds", "steps_run", "passes"):
            number = value.get(key, 0)
            if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
                self.fail(f"{where}: {key} must be a finite number, got {number!r}")
        self.kind(value["cancelled"], bool, f"{where}: cancelled")
        for index_list in ("projected", "keep"):
            indices = value[index_list]
            if not isinstance(indices, list) or not all(isinstance(i, int) and 0 <= i < count for i in indices):
                self.fail(f"{where}: {index_list} must list segment numbers from 0 to {count - 1}, got {indices!r}")
        if set(value["projected"]) & set(value["keep"]) or len(set(value["projected"])) != len(value["projected"]):
            self.fail(f"{where}: a segment is listed twice in projected and keep")
        self.codes(value["codes"], f"{where}: codes", G, len(value["projected"]))
        self.masks(value["masks"], f"{where}: masks", count, size)
        self.image(value["target"], f"{where}: target", 1, size)
        self.image(value["renders"], f"{where}: renders", count, size)
        self.image(value["composite"], f"{where}: composite", 1, size)
        losses = value["segment_losses"]
        self.keys(losses, f"{where}: segment losses", ["lpips", "l2", "total"])
        for key, loss in losses.items():
            loss = self.tensor(loss, f"{where}: {key} losses", torch.float32, 1)
            if loss.shape != (count,):
                self.fail(f"{where}: {key} losses are {_shape(loss)}; expected one per segment ({count})")
        history = value["history"]
        if not isinstance(history, list) or len(history) > MAX_HISTORY:
            self.fail(f"{where}: history must be a list of at most {MAX_HISTORY} losses")
        if not isinstance(value["config"], dict):
            self.fail(f"{where}: config must be a dictionary of settings")
        generators = value.get("generators", {})
        if not isinstance(generators, dict) or not all(isinstance(k, int) and 0 <= k < count for k in generators):
            self.fail(f"{where}: fine-tuned generators must be keyed by segment numbers from 0 to {count - 1}")
        shapes = {key: tensor.shape for key, tensor in G.state_dict().items()} if generators else {}
        for segment, checkpoint in generators.items():
            owner = f"{where}: the fine-tuned generator of segment {segment}"
            self.keys(checkpoint, owner, ["g_ema", "latent_avg"])
            state = checkpoint["g_ema"]
            if not isinstance(state, dict) or set(state) != set(shapes):
                self.fail(f"{owner} is not a generator of this model's architecture")
            for key, tensor in [*state.items(), ("latent_avg", checkpoint["latent_avg"])]:
                expected = shapes.get(key, (G.style_dim,))
                if not isinstance(tensor, torch.Tensor) or tensor.numel() != math.prod(expected):
                    self.fail(f"{owner}: {key} is not a tensor of shape {tuple(expected)}")
                if not tensor.is_floating_point() or not _storage_holds(tensor):
                    self.fail(f"{owner}: {key} is not a float tensor with its own stored data")
        return value


def _storage_holds(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s storage holds every element once: no stride-0 or overlapping view, no overrun."""
    if tensor.numel() == 0:
        return True
    stored = tensor.untyped_storage().nbytes() // tensor.element_size()
    last = tensor.storage_offset() + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()) if n > 1)
    repeats = any(s == 0 for n, s in zip(tensor.shape, tensor.stride()) if n > 1)
    return not repeats and min(tensor.stride(), default=0) >= 0 and last < stored and tensor.numel() <= stored


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(n) for n in tensor.shape) if tensor.dim() else "a scalar"
