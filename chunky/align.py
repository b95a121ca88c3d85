"""Faces in real photos: detection, FFHQ alignment, and pasting an edited crop back into the photo.

Coordinates are continuous pixel coordinates (pixel (i, j) covers [j, j+1] x [i, i+1]); points are
(x, y). ``matrix`` maps photo coordinates to crop coordinates. Images are uint8 [H, W, 3] RGB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Protocol

import cv2
import numpy as np

from chunky.errors import InvalidInputError

log = logging.getLogger(__name__)

MIN_FACE_PX = 48  # eye-to-mouth-and-eyes scale of the FFHQ quad, in photo pixels (the crop side is 2x this);
# at most half the crop side (a 64 px model's crop is fine from a 64 px face)
DETECT_MAX_SIDE = 800  # photos are downscaled to this for detection (RetinaFace-R50 on 2 CPU cores: ~1 s);
# alignment and paste-back use the full resolution
IDENTITY_TOLERANCE = 0.02  # relative: a transform this close to identity means "already aligned"


@dataclass(frozen=True)
class DetectedFace:
    """One face found by a detector, in the coordinates of the image it was given.

    Attributes:
        box: [4] x0, y0, x1, y1.
        score: detector confidence in [0, 1].
        landmarks: [5, 2] (x, y) of the left eye, right eye, nose tip, left and right mouth corners
            (left/right as seen in the image).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an [H, W, 3] uint8 RGB image."""


COMPACT_PHOTO_BYTES = 24 << 20  # photos larger than this in memory are kept PNG-encoded (lossless)


@dataclass(frozen=True)
class EncodedPhoto:
    """A large photo kept as PNG bytes (lossless; decoded only to paste an edit back)."""

    png: bytes

    @classmethod
    def of(cls, image: np.ndarray) -> EncodedPhoto:
        ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise InvalidInputError("The photo could not be encoded for keeping.")
        return cls(data.tobytes())

    def decode(self) -> np.ndarray:
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class AlignedFace:
    """An FFHQ-aligned crop and how to put it back.

    Attributes:
        crop: [S, S, 3] uint8, the aligned face.
        matrix: [2, 3] float64 similarity transform, photo coordinates -> crop coordinates.
        original: [H, W, 3] uint8, the photo at full resolution (EXIF orientation applied), or an
            `EncodedPhoto` of it (see `compact`); `photo()` gives the pixels either way.
        landmarks: [5, 2] landmarks in photo coordinates (None when alignment was skipped).
        face_count: faces found in the photo (1 when alignment was skipped).
        face_index: which one this is (0 = the largest).
        skipped: the photo was already aligned, so the crop is the photo resized.
    """

    crop: np.ndarray
    matrix: np.ndarray
    original: np.ndarray
    landmarks: np.ndarray | None = None
    face_count: int = 1
    face_index: int = 0
    skipped: bool = False
    boxes: list[np.ndarray] = field(default_factory=list)
    note: str = ""

    @property
    def size(self) -> int:
        return self.crop.shape[0]

    def photo(self) -> np.ndarray:
        """[H, W, 3] uint8: the full-resolution photo."""
        return self.original.decode() if isinstance(self.original, EncodedPhoto) else self.original

    def compact(self, max_bytes: int = COMPACT_PHOTO_BYTES) -> AlignedFace:
        """This face, with the photo PNG-encoded in memory when it holds more than ``max_bytes`` raw."""
        if isinstance(self.original, EncodedPhoto) or self.original.nbytes <= max_bytes:
            return self
        return replace(self, original=EncodedPhoto.of(self.original))

    def photo_bytes(self) -> int:
        """Bytes the photo takes in memory."""
        return len(self.original.png) if isinstance(self.original, EncodedPhoto) else self.original.nbytes


def canonical_landmarks(size: int) -> np.ndarray:
    """[5, 2] landmarks for which `ffhq_matrix` is the identity on a ``size`` crop: where FFHQ puts a face."""
    s = float(size)
    eye_y, mouth_y = 0.475 * s, 0.725 * s
    return np.array(
        [[0.375 * s, eye_y], [0.625 * s, eye_y], [0.5 * s, 0.6 * s], [0.4 * s, mouth_y], [0.6 * s, mouth_y]]
    )


def ffhq_matrix(landmarks: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The FFHQ crop of a face as a similarity transform.

    FFHQ's recipe: the crop is the square centred a little below the eyes, oriented along the
    eye-to-eye axis (corrected by the eye-to-mouth axis), with half-side max(2 |eye_to_eye|,
    1.8 |eye_to_mouth|).

    Args:
        landmarks: [5, 2] (eyes, nose, mouth corners) in photo coordinates.
        size: crop side in pixels.

    Returns:
        ([2, 3] photo -> crop matrix, half-side of the quad in photo pixels).
    """
    eye_left, eye_right, _, mouth_left, mouth_right = np.asarray(landmarks, dtype=np.float64)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    center = eye_avg + eye_to_mouth * 0.1
    scale = size / (2 * half)
    rotation = np.stack([x, y]) * scale  # rows: crop x and y axes in photo space
    matrix = np.concatenate([rotation, (size / 2 - rotation @ center)[:, None]], axis=1)
    return matrix, half


@dataclass(frozen=True)
class FaceTemplate:
    """Where a generator's training images put a face, so that crops fed to it are framed the same way.

    Attributes:
        name: shown to users ("FFHQ", "small model").
        points: [5, 2] (x, y) of the left eye, right eye, nose tip, left and right mouth corner, as fractions
            of the crop side.
        ffhq_recipe: True: crop with FFHQ's own recipe (`ffhq_matrix`, which reads eyes and mouth only);
            False: the least-squares similarity transform that sends the 5 landmarks onto ``points``.
    """

    name: str
    points: tuple[tuple[float, float], ...]
    ffhq_recipe: bool = False

    def landmarks(self, size: int) -> np.ndarray:
        """[5, 2] landmark positions in a ``size`` crop (continuous pixel coordinates)."""
        return np.asarray(self.points, dtype=np.float64) * size

    def matrix(self, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, float]:
        """([2, 3] photo -> crop matrix, half-side of the crop in photo pixels) for a face's [5, 2] landmarks."""
        if self.ffhq_recipe:
            return ffhq_matrix(landmarks, size)
        matrix = similarity_fit(np.asarray(landmarks, dtype=np.float64), self.landmarks(size))
        scale = float(np.hypot(*matrix[:, 0]))
        return matrix, size / (2 * scale)


def similarity_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The [2, 3] rotation + uniform scale + translation that sends ``source`` [P, 2] points closest (least
    squares) to ``target`` [P, 2] (Umeyama's method, reflections excluded)."""
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    covariance = t.T @ s / len(source)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / (s**2).sum(1).mean()
    linear = scale * rotation
    return np.concatenate([linear, (mean_t - linear @ mean_s)[:, None]], axis=1)


FFHQ_TEMPLATE = FaceTemplate(
    "FFHQ", ((0.375, 0.475), (0.625, 0.475), (0.5, 0.6), (0.4, 0.725), (0.6, 0.725)), ffhq_recipe=True
)


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def warp(
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    *,
    border: int = cv2.BORDER_REFLECT,
    interpolation: int = cv2.INTER_CUBIC,
) -> np.ndarray:
    """Resample ``image`` so that output pixel p shows image point matrix^-1 p (continuous coordinates).

    Args:
        size: (width, height) of the output.
    """
    # cv2 puts pixel centres at integers; continuous coordinates put them at +0.5
    shift = (
        np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
        @ np.vstack([matrix, [0, 0, 1]])
        @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    )
    return cv2.warpAffine(image, shift[:2], size, flags=interpolation, borderMode=border)


def align_face(
    photo: np.ndarray,
    detector: FaceDetector | None,
    *,
    size: int = 1024,
    face_index: int = 0,
    skip_alignment: bool | None = None,
    template: FaceTemplate = FFHQ_TEMPLATE,
    landmarks: np.ndarray | None = None,
) -> AlignedFace:
    """Find the faces in ``photo`` and return the crop of one of them, framed as ``template`` says.

    Args:
        photo: [H, W, 3] uint8 RGB at full resolution.
        detector: finds faces and their 5 landmarks (None only with ``skip_alignment=True``).
        size: crop side (the generator's size).
        face_index: which face, largest first.
        skip_alignment: True: the photo is an aligned crop already (face where FFHQ puts it; a non-square
            photo is centre-cropped to a square, and ``note`` says so); None: decide from the detector (a
            near-identity transform means aligned); False: always warp.
        template: how the generator's training images frame a face (default FFHQ's recipe).
        landmarks: [5, 2] points placed by hand, in photo pixels (x, y), in `DetectedFace`'s order: the eye
            centres (left, then right in the picture), the nose tip, the mouth corners (left, then right).
            Given, they replace detection (for a photo where no face, or the wrong one, is found).
    """
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise InvalidInputError(f"photo must be an [H, W, 3] uint8 image, got {photo.dtype} {list(photo.shape)}.")
    height, width = photo.shape[:2]
    if skip_alignment:
        return _centre_square(photo, size)
    if landmarks is not None:
        faces = [placed_face(landmarks, width, height)]
        face_index = 0
    elif detector is None:
        raise InvalidInputError("Face detection needs a detector; pass skip_alignment=True for an aligned crop.")
    else:
        faces = detect_faces(photo, detector)
    if not faces:
        raise InvalidInputError(
            "No face was found in the photo. Use a photo where the face is clearly visible, "
            "or mark it as already aligned."
        )
    if not 0 <= face_index < len(faces):
        raise InvalidInputError(f"face_index {face_index} is out of range: {len(faces)} face(s) were found.")
    face = faces[face_index]
    matrix, half = template.matrix(face.landmarks, size)
    smallest = min(MIN_FACE_PX, size / 2)  # a small model's crop needs no more pixels than its own side
    if half < smallest:
        raise InvalidInputError(
            f"The face is too small ({2 * half:.0f} px across); faces need at least "
            f"{2 * smallest:.0f} px. Use a larger or closer photo."
        )
    if skip_alignment is None and height == width and _near_identity(matrix, width, size):
        aligned = _as_aligned(photo, size, face.landmarks, len(faces), face_index, [f.box for f in faces])
    else:
        crop = _crop(photo, matrix, size, half)
        aligned = AlignedFace(
            crop, matrix, photo, face.landmarks, len(faces), face_index, False, [f.box for f in faces]
        )
    if landmarks is not None:
        aligned = replace(aligned, note=(aligned.note + " Aligned to the five points placed by hand.").strip())
    return aligned


def placed_face(landmarks, width: int, height: int) -> DetectedFace:
    """A face from five points placed by hand ([5, 2] photo pixels, `align_face`'s order), checked: finite,
    inside the photo, the eyes apart and above the mouth."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise InvalidInputError(
            "Place five points: the two eye centres, the nose tip and the two mouth corners "
            f"(x, y in photo pixels); got {np.asarray(landmarks).shape} values."
        )
    if (points < 0).any() or (points[:, 0] > width).any() or (points[:, 1] > height).any():
        raise InvalidInputError(f"Every point must lie inside the {width}x{height} photo.")
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    if np.linalg.norm(points[1] - points[0]) < 2 or mouth[1] <= eyes[1]:
        raise InvalidInputError(
            "The points do not make a face: place the eyes first (left, then right in the picture), "
            "then the nose tip, then the mouth corners, below the eyes."
        )
    low, high = points.min(axis=0), points.max(axis=0)
    return DetectedFace(np.concatenate([low, high]), 1.0, points)


def detect_faces(photo: np.ndarray, detector: FaceDetector) -> list[DetectedFace]:
    """Faces of ``photo`` in its own coordinates, largest first; big photos are detected downscaled."""
    scale = min(1.0, DETECT_MAX_SIDE / max(photo.shape[:2]))
    small = photo if scale == 1.0 else cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    faces = [
        DetectedFace(np.asarray(f.box, np.float64) / scale, float(f.score), np.asarray(f.landmarks, np.float64) / scale)
        for f in detector.detect(small)
    ]
    return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def _near_identity(matrix: np.ndarray, width: int, size: int) -> bool:
    """Does ``matrix`` send the photo's corners within IDENTITY_TOLERANCE * size of a plain resize?"""
    expected = np.array([[size / width, 0, 0], [0, size / width, 0]])
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, width, 1], [width, width, 1]], dtype=np.float64)
    return np.abs(corners @ (matrix - expected).T).max() < IDENTITY_TOLERANCE * size


def _as_aligned(photo: np.ndarray, size: int, landmarks=None, count: int = 1, index: int = 0, boxes=()) -> AlignedFace:
    scale = size / photo.shape[0]
    matrix = np.array([[scale, 0, 0], [0, scale, 0]], dtype=np.float64)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    crop = photo if scale == 1 else cv2.resize(photo, (size, size), interpolation=interpolation)
    return AlignedFace(crop, matrix, photo, landmarks, count, index, True, list(boxes))


def _centre_square(photo: np.ndarray, size: int) -> AlignedFace:
    """A photo taken as aligned: its centred square (the whole photo when square), resized to ``size``."""
    height, width = photo.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    if side == height == width:
        return _as_aligned(photo, size)
    aligned = _as_aligned(photo[top : top + side, left : left + side], size)
    scale = size / side
    matrix = np.array([[scale, 0, -scale * left], [0, scale, -scale * top]], dtype=np.float64)
    note = f"The {width}x{height} photo is not square: its centred {side}x{side} square is used."
    return AlignedFace(aligned.crop, matrix, photo, skipped=True, note=note)


def _crop(photo: np.ndarray, matrix: np.ndarray, size: int, half: float) -> np.ndarray:
    """Warp the crop with reflected padding, then blur the padding and fade it to the median colour (as
    FFHQ's preprocessing does) so mirrored content does not look like a second face."""
    shrink = (2 * half) / size
    source, to_crop = photo, matrix
    if shrink > 2:  # a big face in a big photo: downscale first to avoid aliasing
        factor = 1.0 / np.floor(shrink)
        source = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        to_crop = matrix @ np.diag([1 / factor, 1 / factor, 1.0])
    crop = warp(source, to_crop, (size, size)).astype(np.float32)
    inside = warp(
        np.full(source.shape[:2], 255, np.uint8),
        to_crop,
        (size, size),
        border=cv2.BORDER_CONSTANT,
        interpolation=cv2.INTER_LINEAR,
    )
    outside = inside < 128
    if not outside.any():
        return crop.round().clip(0, 255).astype(np.uint8)
    distance = cv2.distanceTransform(outside.astype(np.uint8), cv2.DIST_L2, 5)
    fade = np.clip(distance / (0.1 * size), 0, 1)[..., None]
    sigma = max(1.0, 0.02 * size)
    blurred = cv2.GaussianBlur(crop, (0, 0), sigma)
    median = np.median(crop[~outside], axis=0)
    padded = blurred + (median - blurred) * fade
    crop = np.where(outside[..., None], padded, crop)
    return crop.round().clip(0, 255).astype(np.uint8)


def paste_back(
    edited: np.ndarray, aligned: AlignedFace, *, region: np.ndarray | None = None, feather: float = 0.04
) -> np.ndarray:
    """Put an edited crop back into the full-resolution photo.

    Args:
        edited: [S', S', 3] uint8, the edited crop (any size; scaled to the aligned crop's frame).
        aligned: the alignment it came from.
        region: optional [S', S'] float in [0, 1], where the edit may show (e.g. the projected segments);
            default the whole crop.
        feather: width of the soft edge, as a fraction of the crop side, so no box edge shows.

    Returns:
        [H, W, 3] uint8: the photo with the edit blended in; pixels outside the (feathered) region are
        exactly the original.
    """
    if edited.ndim != 3 or edited.shape[0] != edited.shape[1] or edited.shape[2] != 3:
        raise InvalidInputError(f"edited must be a square [S, S, 3] crop, got {list(edited.shape)}.")
    side = edited.shape[0]
    to_crop = np.diag([side / aligned.size, side / aligned.size]) @ aligned.matrix
    weight = np.ones((side, side), np.float32) if region is None else np.asarray(region, np.float32)
    if weight.shape != (side, side):
        raise InvalidInputError(f"region must be [{side}, {side}] like the edited crop, got {list(weight.shape)}.")
    edge = max(1, int(round(feather * side)))
    weight = weight.copy()
    weight[:edge], weight[-edge:], weight[:, :edge], weight[:, -edge:] = 0, 0, 0, 0
    weight = cv2.GaussianBlur(weight, (0, 0), edge / 2) if edge > 1 else weight

    photo = aligned.photo()
    height, width = photo.shape[:2]
    # only the photo's part under the crop is touched (a small box in a big photo)
    corners = np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64)
    to_photo = invert_matrix(to_crop)
    mapped = corners @ to_photo[:, :2].T + to_photo[:, 2]
    x0, y0 = np.floor(mapped.min(0)).astype(int).clip(0, [width, height])
    x1, y1 = np.ceil(mapped.max(0)).astype(int).clip(0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return photo.copy()
    window = to_crop @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    box = (x1 - x0, y1 - y0)
    face = warp(edited, invert_matrix(window), box, border=cv2.BORDER_REPLICATE).astype(np.float32)
    alpha = warp(weight, invert_matrix(window), box, border=cv2.BORDER_CONSTANT, interpolation=cv2.INTER_LINEAR)
    out = photo.copy()
    part = out[y0:y1, x0:x1].astype(np.float32)
    blended = part + (face - part) * alpha.clip(0, 1)[..., None]
    changed = alpha > 0
    out[y0:y1, x0:x1][changed] = blended[changed].round().clip(0, 255).astype(np.uint8)
    return out
