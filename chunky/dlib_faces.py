"""The offline face pipeline: dlib's detector, landmarks and face embedding, and a segmenter drawn from
the landmarks. Everything here installs by package name (``dlib-bin`` and ``face-recognition-models``)
and needs no download, so it works on a machine without the Hugging Face Hub.

* `DlibDetector`: dlib's HOG frontal-face detector and its 68-point shape predictor (the model the
  original FFHQ alignment used), reduced to the 5 points `chunky.align` aligns with.
* `LandmarkParser`: CelebAMask-HQ labels for skin, brows, eyes, nose, lips and inner mouth, as polygons
  through the 68 landmarks of an aligned crop; everything else is background. It stands in for BiSeNet
  when that is not available: its parts follow the face, but it knows nothing of hair, ears or clothes.
* `DlibIdentity`: dlib's 128-d face recognition ResNet; the distance is the Euclidean distance of the
  two embeddings (dlib calls pairs under 0.6 the same person). It is not ArcFace: figures from it are
  labelled "dlib identity distance".

Licences: the 68-point model was trained on iBUG 300-W, whose terms exclude commercial use; the
5-point model, the detector and the recognition network are CC0.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch

from chunky.align import DetectedFace
from chunky.errors import WeightsUnavailableError

log = logging.getLogger(__name__)

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
DETECT_MIN_SIDE = 256  # dlib's HOG detector finds faces from about 80 px: small crops are upscaled to this first
SAME_PERSON = 0.6  # dlib's threshold on the embedding distance


def available() -> bool:
    """Are dlib and its model files installed?"""
    return (
        importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
    )


def model_file(name: str) -> Path:
    """A model file of the ``face-recognition-models`` package, found without importing it (its
    ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "The offline face models are not installed: "
            "`pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} is missing: reinstall face-recognition-models==0.3.0.")
    return path


@cache
def _dlib():
    try:
        import dlib
    except ImportError:
        raise WeightsUnavailableError("dlib is not installed: `pip install dlib-bin==20.0.1.post1`.") from None
    return dlib


@cache
def _shape_predictor(name: str):
    return _dlib().shape_predictor(str(model_file(name)))


def _upscaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image at least DETECT_MIN_SIDE px on its short side (cubic), and the factor applied."""
    factor = max(1.0, DETECT_MIN_SIDE / min(image.shape[:2]))
    if factor == 1.0:
        return np.ascontiguousarray(image), 1.0
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC), factor


def _largest(rects):
    """The largest of dlib's rectangles, or None when there are none."""
    return max(rects, key=lambda r: r.area()) if rects else None


def _box(rect) -> np.ndarray:
    """[4] x0, y0, x1, y1 of a dlib rectangle (dlib's right and bottom are inclusive)."""
    return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64)


def landmarks_68(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """[68, 2] (x, y) landmarks, in continuous pixel coordinates, of the face in ``box`` [4] (x0, y0, x1, y1)
    of an [H, W, 3] uint8 RGB image."""
    dlib = _dlib()
    rect = dlib.rectangle(*[int(round(v)) for v in box])
    shape = _shape_predictor(LANDMARKS_68)(np.ascontiguousarray(image), rect)
    # dlib puts pixel centres at integers; chunky's continuous coordinates put them at +0.5
    return np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float64)


def five_points(points: np.ndarray) -> np.ndarray:
    """The 5 alignment points from 68 landmarks: left eye centre, right eye centre, nose tip, left and
    right mouth corners (as seen in the image), [5, 2]."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


class DlibDetector:
    """dlib's HOG detector + 68-point landmarks. Implements `chunky.align.FaceDetector`.

    Args:
        upsample: how many times dlib upsamples the image while looking (1 finds faces from ~40 px).
    """

    def __init__(self, *, upsample: int = 1):
        self._detector = _dlib().get_frontal_face_detector()
        _shape_predictor(LANDMARKS_68)  # load now, so a missing file fails at construction
        self.upsample = upsample

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an [H, W, 3] uint8 RGB image, with scores from dlib (detection margins, mapped to (0, 1))."""
        big, factor = _upscaled(image)
        rects, scores, _ = self._detector.run(big, self.upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            box = _box(rect)
            points = five_points(landmarks_68(big, box)) / factor
            faces.append(DetectedFace(box / factor, float(1 / (1 + np.exp(-2 * score))), points))
        return faces


class LandmarkParser:
    """Face parts as CelebAMask-HQ labels from dlib's 68 landmarks of an aligned crop. Implements
    `chunky.segmentation.FaceParser`. Labels used: 1 skin, 2/3 brows, 4/5 eyes, 10 nose, 11 inner mouth,
    12/13 lips, 0 everything else (hair, ears, neck and background are not told apart).

    When dlib finds no face in the crop, the landmarks are looked for in the box where the crop's
    template puts the face (``fallback_box``, fractions of the side), so a crop always gets segments.
    """

    def __init__(self, fallback_box: tuple[float, float, float, float] = (0.2, 0.25, 0.8, 0.85)):
        self._detector = _dlib().get_frontal_face_detector()
        _shape_predictor(LANDMARKS_68)
        self.fallback_box = fallback_box

    def landmarks(self, crop: np.ndarray) -> np.ndarray:
        """[68, 2] landmarks of the largest face of an aligned [S, S, 3] uint8 crop, in its pixel coordinates."""
        big, factor = _upscaled(crop)
        rect = _largest(self._detector(big, 1))
        box = _box(rect) if rect is not None else np.array(self.fallback_box) * big.shape[0]
        return landmarks_68(big, box) / factor

    def parse(self, crop: np.ndarray) -> np.ndarray:
        """[S, S] int64 labels of an aligned [S, S, 3] uint8 crop."""
        return labels_from_landmarks(self.landmarks(crop), crop.shape[0])


def labels_from_landmarks(points: np.ndarray, size: int) -> np.ndarray:
    """[size, size] int64 CelebAMask-HQ labels drawn from [68, 2] landmarks (pixel coordinates of the crop).

    Skin is the jaw line closed over the brows and lifted by a third of the brow-to-chin height (the
    forehead); brows are the brow lines thickened by a tenth of the eye distance; eyes, nose and lips are
    the polygons of their landmarks (the nose from the bridge top, widened to the nostrils)."""
    scale = 8  # polygons are drawn at 8x and averaged down: smooth, sub-pixel edges
    big = size * scale
    labels = np.zeros((big, big), np.uint8)
    p = points * scale
    eye_distance = float(np.linalg.norm(p[36:42].mean(0) - p[42:48].mean(0)))
    brow_top = p[17:27, 1].min()
    chin = p[8, 1]
    lift = (chin - brow_top) / 3
    forehead = p[26:16:-1].copy()  # brows from right to left, lifted
    forehead[:, 1] -= lift
    skin = np.concatenate([p[0:17], forehead])

    def fill(polygon: np.ndarray, label: int) -> None:
        cv2.fillPoly(labels, [np.round(polygon).astype(np.int32)], label, lineType=cv2.LINE_8)

    fill(skin, 1)
    thickness = max(1, int(round(eye_distance / 10)))
    for brow, label in ((p[17:22], 2), (p[22:27], 3)):
        cv2.polylines(labels, [np.round(brow).astype(np.int32)], False, label, thickness)
    fill(p[36:42], 4)
    fill(p[42:48], 5)
    nose = np.concatenate([[p[27]], [p[31] - (p[33] - p[31]) * 0.3], p[32:35], [p[35] + (p[35] - p[33]) * 0.3]])
    fill(nose, 10)
    fill(np.concatenate([p[48:55], p[64:59:-1]]), 12)  # upper lip: outer top edge, inner top edge back
    fill(np.concatenate([p[54:60], p[48:49], p[60:61], p[67:63:-1]]), 13)  # lower lip
    fill(p[60:68], 11)  # inner mouth
    # back to the crop size: each pixel takes the label that covers most of it
    counts = np.stack(
        [cv2.resize((labels == k).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) for k in range(14)]
    )
    return counts.argmax(0).astype(np.int64)


class DlibIdentity:
    """dlib's face recognition network: 128-d embeddings and their Euclidean distance (dlib: under 0.6 means
    the same person). Same interface as `chunky.face_models.ArcFaceIdentity`."""

    name = "dlib identity distance"
    different_person = SAME_PERSON

    def __init__(self):
        dlib = _dlib()
        self._net = dlib.face_recognition_model_v1(str(model_file(RECOGNITION)))
        self._shape5 = _shape_predictor(LANDMARKS_5)
        self._detector = dlib.get_frontal_face_detector()

    def embed_uint8(self, image: np.ndarray) -> np.ndarray:
        """[128] embedding of the largest face of an [H, W, 3] uint8 image (the whole image's central box
        when dlib finds none, as happens with tight or small crops)."""
        dlib = _dlib()
        big, _ = _upscaled(image)
        rect = _largest(self._detector(big, 1))
        if rect is None:
            side = big.shape[0]
            rect = dlib.rectangle(int(0.2 * side), int(0.2 * side), int(0.8 * side), int(0.8 * side))
        shape = self._shape5(big, rect)
        chip = dlib.get_face_chip(big, shape, size=150, padding=0.25)
        return np.asarray(self._net.compute_face_descriptor(chip), dtype=np.float64)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] faces in [-1, 1] -> [N, 128] embeddings."""
        arrays = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        arrays = arrays.permute(0, 2, 3, 1).cpu().numpy()
        return torch.from_numpy(np.stack([self.embed_uint8(a) for a in arrays])).float()

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of the identities of [N, 3, H, W] image pairs in [-1, 1]: [N]."""
        return (self.embed(a) - self.embed(b)).norm(dim=1)
