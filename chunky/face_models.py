"""The real face models, built from facexlib's classes with weights fetched through the registry.

facexlib's own ``init_*_model`` helpers download from GitHub and unpickle without ``weights_only``;
here the same networks load their state dicts with ``weights_only=True``. Both models run on the
device they are given; the CPU is fine (RetinaFace on a <= 1024 px photo, BiSeNet at 512 px).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from chunky.align import DetectedFace
from chunky.errors import CheckpointError
from chunky.weights import fetch

log = logging.getLogger(__name__)

DETECTOR_WEIGHTS = "retinaface-resnet50.pth"
PARSER_WEIGHTS = "face-parsing-bisenet.pth"
IDENTITY_WEIGHTS = "arcface-ir-se50.pth"
PARSER_INPUT = 512
_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _load_state(module: torch.nn.Module, path: Path, what: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors of every kind: the file is not a plain state dict
        raise CheckpointError(f"{what} weights at {path} could not be read safely ({error}).") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{what} weights at {path} do not fit the network: {error}") from None


class RetinaFaceDetector:
    """facexlib's RetinaFace (ResNet-50): faces with 5 landmarks. Implements `chunky.align.FaceDetector`.

    Args:
        weights: a local weight file (default: fetched through the registry).
        cache_dir: Hugging Face cache to use (default: the standard one).
        device: where to run.
        min_score: detections below this confidence are dropped.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        device: torch.device | str = "cpu",
        min_score: float = 0.8,
    ):
        from chunky.compat import ensure_torchvision

        ensure_torchvision()
        from facexlib.detection.retinaface import RetinaFace

        self.device = torch.device(device)
        with warnings.catch_warnings():  # facexlib builds torchvision's resnet50 with `pretrained=False`
            warnings.simplefilter("ignore", UserWarning)
            self.model = RetinaFace(network_name="resnet50", half=False, device=self.device)
        _load_state(
            self.model, Path(weights) if weights else fetch(DETECTOR_WEIGHTS, cache_dir=cache_dir), "RetinaFace"
        )
        self.model.eval().requires_grad_(False)
        self.min_score = min_score

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an [H, W, 3] uint8 RGB image."""
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        rows = self.model.detect_faces(bgr, conf_threshold=self.min_score)
        return [
            DetectedFace(row[:4].astype(np.float64), float(row[4]), row[5:15].reshape(5, 2).astype(np.float64))
            for row in rows
        ]


class BiSeNetParser:
    """facexlib's BiSeNet face parser: [S, S] labels 0..18 in CelebAMask-HQ order for an aligned crop.

    Args:
        weights: a local weight file (default: fetched through the registry).
        cache_dir: Hugging Face cache to use (default: the standard one).
        device: where to run.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        device: torch.device | str = "cpu",
    ):
        from chunky.compat import ensure_torchvision

        ensure_torchvision()
        from facexlib.parsing.bisenet import BiSeNet

        self.device = torch.device(device)
        self.model = BiSeNet(num_class=19)
        _load_state(self.model, Path(weights) if weights else fetch(PARSER_WEIGHTS, cache_dir=cache_dir), "BiSeNet")
        self.model.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def parse(self, crop: np.ndarray) -> np.ndarray:
        """[S, S, 3] uint8 RGB aligned crop -> [S, S] int64 labels (parsed at 512 px, resized back)."""
        size = crop.shape[0]
        image = cv2.resize(
            crop,
            (PARSER_INPUT, PARSER_INPUT),
            interpolation=cv2.INTER_AREA if size > PARSER_INPUT else cv2.INTER_LINEAR,
        )
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(self.device)
        x = (x - _IMAGENET_MEAN.to(self.device)) / _IMAGENET_STD.to(self.device)
        logits = self.model(x)[0]  # [1, 19, 512, 512]
        if size != PARSER_INPUT:
            logits = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits[0].argmax(0).cpu().numpy().astype(np.int64)


class ArcFaceIdentity:
    """facexlib's ArcFace IR-SE50: unit identity embeddings of aligned faces, for identity distance.

    The usual protocol for FFHQ-aligned crops: at 256 px, the face box rows 35-223, columns 32-220,
    averaged down to 112 px, in [-1, 1].

    Args:
        weights: a local weight file (default: fetched through the registry); "random" builds the network
            with seeded random weights (test mode: finite but meaningless distances).
        cache_dir: Hugging Face cache to use.
        device: where to run.
    """

    name = "1 - cos ArcFace (fixed crop)"
    different_person = 0.5

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        device: torch.device | str = "cpu",
    ):
        from chunky.compat import ensure_torchvision

        ensure_torchvision()
        from facexlib.recognition.arcface_arch import Backbone

        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # seeded random weights without touching the global RNG
            torch.manual_seed(0)
            self.model = Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se")
        if weights != "random":
            _load_state(
                self.model, Path(weights) if weights else fetch(IDENTITY_WEIGHTS, cache_dir=cache_dir), "ArcFace"
            )
        self.model.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] aligned faces in [-1, 1] -> [N, 512] unit vectors."""
        x = (
            torch.nn.functional.interpolate(images.float(), size=(256, 256), mode="area")
            if images.shape[-1] != 256
            else images.float()
        )
        x = torch.nn.functional.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (112, 112))
        return self.model(x.contiguous().to(self.device))  # facexlib flattens with .view: needs NCHW order

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """1 - cosine similarity of the identities of [N, 3, H, W] image pairs: [N]."""
        return 1 - (self.embed(a) * self.embed(b)).sum(dim=1)
