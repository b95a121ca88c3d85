"""`ChunkyEditor`: the facade the app, the CLI and the Python API use. It owns the models and the device;
the algorithms live in their own modules.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from chunky import dlib_faces
from chunky.align import FFHQ_TEMPLATE, AlignedFace, FaceDetector, FaceTemplate, align_face
from chunky.cache import InversionCache, cached_invert
from chunky.config import InversionConfig, preset, whole
from chunky.device import PRECISIONS, autocast, default_device
from chunky.directions import Direction, factor_directions, load_direction_folder, pca_directions, published_directions
from chunky.editing import EditResult, apply_edit, style_variations, transfer_segment
from chunky.errors import ChunkyError, InvalidInputError, WeightsUnavailableError
from chunky.generator import Generator, random_generator
from chunky.images import resize_uint8, tensor_to_uint8, uint8_to_tensor
from chunky.inversion import InversionResult, ProgressCallback, invert, reproject
from chunky.losses import build_perceptual
from chunky.refinement import refine_all
from chunky.segmentation import FaceParser, LayoutParser, Segmentation
from chunky.tuning import tune_segment

log = logging.getLogger(__name__)

SMALL_MODEL = "small-face-64.pt"
SMALL_MODEL_LABEL = (
    "Small face model: 64 px StyleGAN2 distilled from a DCGAN trained on DigiFace-1M (synthetic faces), "
    "bundled, offline face pipeline (dlib). For photo-quality results use the FFHQ model "
    "(CHUNKY_MODEL=ffhq, downloaded from the Hugging Face Hub)."
)
# Where the small model's images put a face: the mean dlib landmarks of its samples (tools/small_model_report.py),
# mirrored to be symmetric; and where dlib's face box sits in such a crop (fractions of the side).
SMALL_TEMPLATE = FaceTemplate(
    "small model", ((0.354, 0.47), (0.646, 0.47), (0.5, 0.653), (0.365, 0.819), (0.635, 0.819))
)
SMALL_TEMPLATE_FACE_BOX = (0.1, 0.25, 0.9, 1.0)
# What the small model's own directions visibly do, where one can tell (sweeps of -3..3 on seeded faces; the
# others mix pose, shading and colour).
SMALL_DIRECTION_NAMES = {
    "Component 1": "Light: dark to bright (component 1)",
}


class ChunkyEditor:
    """Everything a user session needs, built once and shared read-only between sessions.

    Args:
        generator: a loaded `Generator` (moved to ``device``).
        device: where to compute (default: the GPU when usable, else the CPU).
        precision: "fp32" or "bf16" for rendering.
        label: a short description shown to users (e.g. which model is loaded).
        pretrained_perceptual: LPIPS with its ImageNet backbone (False: random backbone, offline tests).
        cache: where finished inversions are kept, so the same request is answered at once.
        detector, parser: face detector and parser (default: facexlib's RetinaFace and BiSeNet, built
            on first use with weights from the Hub).
        face_models: False means there are none (test mode): photos must be aligned crops already, and
            segments come from the parser given, if any.
        generator_name: the generator's registry name; its published directions are offered (fetched on
            first use of `directions`).
        work_size: see `work_size` (default: chosen by device).
        identity: the identity model (default: ArcFace, built on first use; dlib's embedding when ArcFace's
            weights cannot be had and dlib is installed).
        template: how the generator's training images frame a face; photos are cropped to match.
        default_perceptual: the inversion loss this model's presets use ("lpips-vgg", or "none" for L2 only).
        default_precision: the precision this model's presets use (None: each preset's own); the page's "auto" uses
            the precision measured at start-up instead, once measured.
        direction_names: new names for some of the generator's own directions, by their default name
            ("Component 1" -> "Light from the left"), where what they visibly do is known.
    """

    def __init__(
        self,
        generator: Generator,
        *,
        device: torch.device | str | None = None,
        precision: str = "fp32",
        label: str = "",
        pretrained_perceptual: bool = True,
        cache: InversionCache | None = None,
        detector: FaceDetector | None = None,
        parser: FaceParser | None = None,
        face_models: bool = True,
        generator_name: str | None = None,
        work_size: int | None = None,
        identity=None,
        template: FaceTemplate = FFHQ_TEMPLATE,
        default_perceptual: str = "lpips-vgg",
        default_precision: str | None = None,
        direction_names: Mapping[str, str] | None = None,
    ):
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        self.device = torch.device(device) if device is not None else default_device()
        self.generator = generator.to(self.device)
        self.precision = precision
        self.label = label
        self.pretrained_perceptual = pretrained_perceptual
        self.cache = cache
        self._perceptual: dict[str, torch.nn.Module | None] = {}
        self._detector, self._parser, self.face_models = detector, parser, face_models
        self._directions: list[Direction] | None = None
        self.generator_name = generator_name
        self._identity = identity
        self._work_size = work_size
        self.template = template
        self.default_perceptual = default_perceptual
        self.default_precision = default_precision
        self.direction_names = dict(direction_names or {})

    @classmethod
    def from_pretrained(
        cls,
        name: str = "stylegan2-ffhq-1024.pt",
        *,
        cache_dir: str | Path | None = None,
        device: torch.device | str | None = None,
        precision: str = "fp32",
        work_size: int | None = None,
        detector: FaceDetector | None = None,
    ) -> ChunkyEditor:
        """The real FFHQ model, fetched from the Hugging Face Hub on first use (see ``weights/``); ``detector``
        default: RetinaFace (see `detector`)."""
        generator = Generator.from_pretrained(name, cache_dir=cache_dir)
        return cls(
            generator,
            device=device,
            precision=precision,
            label=f"StyleGAN2 {name}",
            generator_name=name,
            work_size=work_size,
            detector=detector,
        )

    @classmethod
    def tiny(cls, seed: int = 0, *, work_size: int | None = None) -> ChunkyEditor:
        """Test mode: a tiny random 64 px generator; no downloads. Its faces are noise, not faces."""
        generator = random_generator(64, 64, 2, seed=seed)
        return cls(
            generator,
            device="cpu",
            label="TEST MODE: tiny random model (outputs are not faces)",
            pretrained_perceptual=False,
            face_models=False,
            work_size=work_size,
        )

    @classmethod
    def small(cls, *, work_size: int | None = None) -> ChunkyEditor:
        """The small face model, bundled in ``weights/`` (no download): a 64 px StyleGAN2 distilled from a DCGAN
        trained on DigiFace-1M's synthetic faces, with the offline face pipeline (dlib detection and
        landmarks, a landmark segmenter, dlib's identity embedding). Real faces, at 64 px, on any machine."""
        generator = Generator.from_pretrained(SMALL_MODEL)
        return cls(
            generator,
            device="cpu",
            label=SMALL_MODEL_LABEL,
            pretrained_perceptual=False,
            detector=dlib_faces.DlibDetector(),
            parser=dlib_faces.LandmarkParser(SMALL_TEMPLATE_FACE_BOX),
            identity=dlib_faces.DlibIdentity(),
            generator_name=SMALL_MODEL,
            work_size=work_size,
            template=SMALL_TEMPLATE,
            default_perceptual="none",
            default_precision="fp32",
            direction_names=SMALL_DIRECTION_NAMES,
        )

    def preset(self, name: str, **changes) -> InversionConfig:
        """`chunky.config.preset` with this model's inversion loss and precision; ``changes`` override any field."""
        return preset(name, **(self._model_settings() | changes))

    def default_config(self, **changes) -> InversionConfig:
        """`InversionConfig`'s defaults with this model's inversion loss and precision; ``changes`` override."""
        return InversionConfig(**(self._model_settings() | changes))

    def _model_settings(self) -> dict:
        settings = {"perceptual": self.default_perceptual}
        if self.default_precision:
            settings["precision"] = self.default_precision
        return settings

    @torch.no_grad()
    def random_face(self, seed: int, *, truncation: float = 0.7, resolution: int | None = None) -> np.ndarray:
        """A synthetic face sampled from the generator: [R, R, 3] uint8.

        Args:
            seed: picks z from a local RNG; the same seed always gives the same face.
            truncation: psi in [0, 1]; lower is more typical, higher more varied.
            resolution: output size (power of two up to the generator's size; default full size).
        """
        if not 0.0 <= truncation <= 1.0:
            raise InvalidInputError(f"truncation must be in [0, 1], got {truncation}.")
        G = self.generator
        z = torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(whole("seed", seed, 0, 2**31 - 1))).to(
            self.device
        )
        with autocast(self.precision, self.device):
            image = G.synthesis(G.mapping(z, truncation_psi=truncation), resolution=resolution)
        return tensor_to_uint8(image.float())

    def work_size(self) -> int:
        """Side of the renders a session works at (optimised at that size too: what is shown is what was
        fitted): the ``work_size`` given, else full size on a GPU and at most 256 px on a CPU, where the
        presets' times hold (the paste-back still lands in the photo at its full resolution)."""
        size = self.generator.size
        return self._work_size or (size if self.device.type == "cuda" else min(size, 256))

    def detector(self) -> FaceDetector | None:
        """The face detector (built on first use): RetinaFace, or dlib's when RetinaFace's weights cannot be
        had; None in test mode."""
        if self._detector is None and self.face_models:
            from chunky.face_models import RetinaFaceDetector

            self._detector = _with_offline_fallback(
                lambda: RetinaFaceDetector(device=self.device), dlib_faces.DlibDetector
            )
        return self._detector

    def parser(self) -> FaceParser | None:
        """The face parser (built on first use): BiSeNet, or the landmark segmenter when BiSeNet's weights
        cannot be had; None in test mode."""
        if self._parser is None and self.face_models:
            from chunky.face_models import BiSeNetParser

            self._parser = _with_offline_fallback(lambda: BiSeNetParser(device=self.device), dlib_faces.LandmarkParser)
        return self._parser

    def identity(self):
        """The identity model (built on first use): ArcFace from the registry, or dlib's face embedding when
        ArcFace's weights cannot be had; seeded random ArcFace weights in test mode (finite but meaningless
        distances). Its ``name`` says which it is."""
        if self._identity is None:
            from chunky.face_models import ArcFaceIdentity

            if not self.face_models:
                self._identity = ArcFaceIdentity("random", device=self.device)
            else:
                self._identity = _with_offline_fallback(
                    lambda: ArcFaceIdentity(device=self.device), dlib_faces.DlibIdentity
                )
        return self._identity

    def align(
        self,
        photo: np.ndarray,
        *,
        face_index: int = 0,
        skip_alignment: bool | None = None,
        landmarks: np.ndarray | None = None,
    ) -> AlignedFace:
        """The FFHQ crop of a face in ``photo`` ([H, W, 3] uint8) at the generator's size.

        ``skip_alignment``: True for a photo that is an aligned crop already; None decides from the
        detector. ``landmarks``: five points placed by hand ([5, 2] photo pixels, see `align_face`) instead
        of detection. Without face models (test mode) photos are taken as aligned crops."""
        detector = None if skip_alignment or landmarks is not None else self.detector()
        if detector is None and landmarks is None:
            skip_alignment = True
        return align_face(
            photo,
            detector,
            size=self.generator.size,
            face_index=face_index,
            skip_alignment=skip_alignment,
            template=self.template,
            landmarks=landmarks,
        )

    def segment(self, crop: np.ndarray) -> Segmentation:
        """Named segments (skin, hair, eyes, ...) of an aligned crop [S, S, 3] uint8, by face parsing
        (in test mode by `LayoutParser`, the average FFHQ layout)."""
        parser = self.parser() or LayoutParser()
        return Segmentation.from_parsing(parser.parse(crop))

    def sketch(self, segmentation: Segmentation, name: str, layer: np.ndarray, *, erase: bool = False) -> Segmentation:
        """Apply a browser sketch layer ([h, w, 4] RGBA, any size: scaled to the segments) to segment ``name``:
        painted pixels join it (``erase=False``) or leave it (``erase=True``)."""
        size = segmentation.size
        if layer.ndim == 3 and layer.shape[2] == 4 and layer.shape[:2] != (size, size):
            layer = cv2.resize(layer, (size, size), interpolation=cv2.INTER_NEAREST)
        return segmentation.erase_sketch(name, layer) if erase else segmentation.apply_sketch(name, layer)

    def directions(self) -> list[Direction]:
        """Every direction for this generator: the published ones for it (downloaded on first use; skipped
        with a warning when unavailable), files in ``CHUNKY_DIRECTIONS_DIR`` that fit it, then the
        generator's own PCA components and closed-form factors (always available). Computed once."""
        if self._directions is None:
            found = published_directions(self.generator, self.generator_name) if self.generator_name else []
            folder = os.environ.get("CHUNKY_DIRECTIONS_DIR")
            if folder and Path(folder).is_dir():
                found += load_direction_folder(folder, self.generator)
            own = pca_directions(self.generator) + factor_directions(self.generator)
            own = [dataclasses.replace(d, name=self.direction_names.get(d.name, d.name)) for d in own]
            self._directions = found + own
        return self._directions

    def edit(
        self,
        result: InversionResult,
        strengths: Mapping[str, float],
        segments: Sequence[str] | None = None,
        *,
        names: tuple[str, ...] = (),
        resolution: int | None = None,
    ) -> EditResult:
        """Move the codes of the named ``segments`` (None: all projected ones) along directions.

        Args:
            strengths: direction name -> slider value.
            segments: names of segments to edit, looked up in ``names`` (the segmentation's names).
            resolution: render size (lower for a live preview).
        """
        indices = None
        if segments:
            indices = [k for k in segment_indices(names, segments) if k in result.projected]
            if not indices:
                raise InvalidInputError("The selected segments were all kept from the photo: there is no code to edit.")
        with autocast(self.precision, self.device):
            return apply_edit(self.generator, result, self.directions(), strengths, indices, resolution=resolution)

    def variations(
        self, result: InversionResult, segment: str, names: tuple[str, ...], *, count: int = 4, seed: int = 0
    ) -> list[EditResult]:
        """``count`` seeded style variations (hair colour, texture, ...) of one named segment; the rest stays."""
        (index,) = segment_indices(names, [segment])
        with autocast(self.precision, self.device):
            return style_variations(self.generator, result, index, count, seed=seed)

    def transfer(
        self,
        result: InversionResult,
        names: tuple[str, ...],
        reference: InversionResult,
        reference_names: tuple[str, ...],
        segment: str,
        *,
        stitch: bool = True,
    ) -> EditResult:
        """Take segment ``segment`` (e.g. "hair") from a reference photo's inversion into this one."""
        for label, available in (("this photo", names), ("the reference photo", reference_names)):
            if segment not in available:
                raise InvalidInputError(f"{label} has no segment named {segment!r}; it has {list(available)}.")
        return transfer_segment(result, reference, names.index(segment), reference_names.index(segment), stitch=stitch)

    def refine(
        self,
        result: InversionResult,
        edit: EditResult | None = None,
        segments: Sequence[int] | None = None,
    ) -> tuple[InversionResult, EditResult | None]:
        """Level-set refinement of the boundaries (all, or those of ``segments``) against the photo, using the
        edited renders when there is an edit. Returns the result and edit with the refined masks."""
        renders = edit.renders if edit is not None else result.renders
        masks = refine_all(result.masks, result.target, renders, segments)
        refined = dataclasses.replace(result, masks=masks, composite=result.composite_of(result.renders, masks))
        if edit is not None:
            edit = dataclasses.replace(edit, composite=result.composite_of(edit.renders, masks))
        return refined, edit

    def reproject(
        self,
        result: InversionResult,
        segments: Sequence[str],
        names: tuple[str, ...],
        *,
        steps: int,
        progress: ProgressCallback | None = None,
    ) -> InversionResult:
        """Re-project the named segments of a (frozen) result against its target, starting from their current
        codes, for ``steps`` steps with the result's other settings (incremental editing)."""
        config = result.config.replace(steps=int(steps))
        return reproject(
            self.generator,
            result,
            segment_indices(names, segments),
            config=config,
            progress=progress,
            perceptual=self.perceptual(config.perceptual),
        )

    def tune(
        self,
        result: InversionResult,
        segment: str,
        names: tuple[str, ...],
        *,
        steps: int = 40,
        progress: ProgressCallback | None = None,
    ) -> InversionResult:
        """Pivotal tuning for the named segment: a fine-tuned generator copy renders it from now on."""
        (index,) = segment_indices(names, [segment])
        return tune_segment(
            self.generator,
            result,
            index,
            steps=int(steps),
            perceptual=self.perceptual(result.config.perceptual),
            progress=progress,
        )

    def perceptual(self, kind: str) -> torch.nn.Module | None:
        """The LPIPS module for ``kind`` ("lpips-vgg", "lpips-alex", "none"), built once and shared."""
        if kind not in self._perceptual:
            module = build_perceptual(kind, pretrained_backbone=self.pretrained_perceptual)
            self._perceptual[kind] = None if module is None else module.to(self.device)
        return self._perceptual[kind]

    def invert(
        self,
        photo: np.ndarray,
        segmentation: Segmentation | None = None,
        *,
        config: InversionConfig = InversionConfig(),
        keep: Sequence[str] = (),
        size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> InversionResult:
        """Project an aligned face photo, one code per segment (or one code when ``segmentation`` is None).

        Args:
            photo: [H, W, 3] uint8 square crop (FFHQ-aligned for a face generator).
            segmentation: the segments (resized to ``size`` here), or None for the global baseline.
            config: inversion settings.
            keep: names of segments taken straight from the photo.
            size: output resolution of renders and composite (power of two <= the generator's size;
                default the generator's size). Optimisation runs at ``config.resolution``.
            progress: ``progress(step, total, info)``; returning False cancels.
        """
        size = size or self.generator.size
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.shape[0] != photo.shape[1]:
            raise InvalidInputError(
                f"photo must be a square [H, W, 3] image (an aligned crop), got {list(photo.shape)}."
            )
        target = uint8_to_tensor(resize_uint8(photo, size)).to(self.device)
        masks = None
        keep_indices: list[int] = []
        if segmentation is not None:
            masks = segmentation.resized(size).masks.to(self.device)
            keep_indices = [segmentation.index(name) for name in keep]
        elif keep:
            raise InvalidInputError("keep needs a segmentation: the global baseline has a single segment.")
        kwargs = dict(
            config=config, keep=keep_indices, progress=progress, perceptual=self.perceptual(config.perceptual)
        )
        if self.cache is not None:
            return cached_invert(self.generator, target, masks, cache=self.cache, **kwargs)
        return invert(self.generator, target, masks, **kwargs)


DETECTORS = ("auto", "dlib")


def load_editor(
    model: str = "ffhq",
    *,
    cache_dir: str | Path | None = None,
    check_network: bool = False,
    work_size: int | None = None,
    detector: str = "auto",
) -> ChunkyEditor:
    """The editor for ``model``: "ffhq" (the Hub's FFHQ generator), "small" (the bundled small face model, no
    download), "tiny" (the random test model) or a path to a StyleGAN2 checkpoint; finished inversions are
    cached in ``cache_dir`` when given.

    ``detector``: "auto" (RetinaFace, or dlib's when RetinaFace's weights cannot be had) or "dlib" (dlib's
    68-point landmarks, as the original FFHQ alignment recipe).

    ``check_network``: first make one quick check that the Hub is reachable; if it is not, downloads are not
    retried (cached files are used, a missing one fails at once with the fix) instead of minutes of retries.
    """
    from chunky.weights import hub_reachable, work_offline

    if detector not in DETECTORS:
        raise InvalidInputError(f"detector must be one of {DETECTORS}, got {detector!r}.")
    if check_network and model == "ffhq" and not os.environ.get("HF_HUB_OFFLINE") and not hub_reachable():
        log.warning("the Hugging Face Hub is not reachable: using cached files only")
        work_offline()
    chosen = dlib_faces.DlibDetector() if detector == "dlib" and model != "tiny" else None
    if model == "tiny":
        editor = ChunkyEditor.tiny(work_size=work_size)
    elif model == "small":
        editor = ChunkyEditor.small(work_size=work_size)
    elif model == "ffhq":
        editor = ChunkyEditor.from_pretrained(work_size=work_size, detector=chosen)
    else:
        editor = ChunkyEditor(Generator.from_checkpoint(model), label=str(model), work_size=work_size, detector=chosen)
    # created on demand; a failed write (read-only or full disk) only means no caching
    editor.cache = InversionCache(cache_dir) if cache_dir else None
    return editor


def editor_from_environment() -> tuple[ChunkyEditor | None, str]:
    """The app's editor, as its environment asks: CHUNKY_MODEL ("ffhq" by default, "small": the bundled small face
    model, "tiny": test mode), CHUNKY_CACHE_DIR (default ~/.cache/chunky/inversions), CHUNKY_WORK_SIZE (default
    by device), with the quick network check.

    Returns (editor, notice). When the default FFHQ model cannot be had (no network, no cached copy), the small
    face model is served instead and the notice holds the download error, to be shown on the page. When no
    model at all can be loaded, the editor is None and the notice says why."""
    cache = os.environ.get("CHUNKY_CACHE_DIR", Path.home() / ".cache" / "chunky" / "inversions")
    size = os.environ.get("CHUNKY_WORK_SIZE")
    model = os.environ.get("CHUNKY_MODEL", "ffhq")
    try:
        work_size = int(size) if size else None
    except ValueError:
        return None, f"CHUNKY_WORK_SIZE must be a whole number of pixels, got {size!r}."
    try:
        return load_editor(model, cache_dir=cache, check_network=True, work_size=work_size), ""
    except WeightsUnavailableError as error:
        if "CHUNKY_MODEL" in os.environ:  # the user asked for this model: say why it failed, serve nothing else
            log.error("%s", error)
            return None, str(error)
        log.warning("the FFHQ model is not available, serving the bundled small face model: %s", error)
        notice = f"The FFHQ model could not be downloaded, so the bundled small face model is served instead. {error}"
        try:
            return load_editor("small", cache_dir=cache, work_size=work_size), notice
        except ChunkyError as small_error:
            return None, f"{error}\n\nThe bundled small face model could not be loaded either: {small_error}"
    except ChunkyError as error:
        log.error("%s", error)
        return None, str(error)


def _with_offline_fallback(build, fallback: type):
    """``build()``, or when its weights cannot be had, the offline stand-in ``fallback()`` (a class of
    `chunky.dlib_faces`) if dlib is installed; otherwise the original error."""
    try:
        return build()
    except WeightsUnavailableError as error:
        if not dlib_faces.available():
            raise
        log.warning("%s; using the offline %s instead", str(error).split(". ")[0], fallback.__name__)
        return fallback()


def segment_indices(names: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Indices of the segments named ``wanted`` in ``names`` (a segmentation's names), or a clear error."""
    missing = [n for n in wanted if n not in names]
    if missing:
        raise InvalidInputError(f"There is no segment named {missing[0]!r}; the segments are {list(names)}.")
    return [list(names).index(n) for n in wanted]
