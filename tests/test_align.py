import cv2
import numpy as np
import pytest

from chunky.align import (
    DETECT_MAX_SIDE,
    AlignedFace,
    DetectedFace,
    align_face,
    canonical_landmarks,
    ffhq_matrix,
    invert_matrix,
    paste_back,
    warp,
)
from chunky.errors import InvalidInputError
from chunky.images import read_image
from tests.conftest import shared_file


class FakeDetector:
    """Returns faces with known landmarks (in the coordinates of the image it is given)."""

    def __init__(self, landmark_sets, reference_width=None):
        self.landmark_sets = [np.asarray(points, np.float64) for points in landmark_sets]
        self.reference_width = reference_width
        self.seen_shapes = []

    def detect(self, image):
        self.seen_shapes.append(image.shape)
        scale = 1.0 if self.reference_width is None else image.shape[1] / self.reference_width
        faces = []
        for landmarks in self.landmark_sets:
            points = landmarks * scale
            box = np.concatenate([points.min(0) - 20 * scale, points.max(0) + 20 * scale])
            faces.append(DetectedFace(box, 0.99, points))
        return faces


def face_256() -> np.ndarray:
    """An FFHQ-aligned 256 px photo from the team's shared data."""
    return read_image(sorted(shared_file("faces/aligned256").glob("*.png"))[0])


def place_in_canvas(face, angle_deg, scale, offset, canvas_shape):
    """Warp the aligned face into a larger canvas with a known similarity transform (crop -> canvas)."""
    size = face.shape[0]
    theta = np.deg2rad(angle_deg)
    rotation = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    crop_to_canvas = np.concatenate([rotation, np.asarray(offset, np.float64)[:, None]], axis=1)
    height, width = canvas_shape
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 255 // (width + height)], -1).astype(
        np.uint8
    )
    placed = warp(face, crop_to_canvas, (width, height), border=cv2.BORDER_CONSTANT)
    inside = (
        warp(
            np.full((size, size), 255, np.uint8),
            crop_to_canvas,
            (width, height),
            border=cv2.BORDER_CONSTANT,
            interpolation=cv2.INTER_NEAREST,
        )
        > 0
    )
    canvas = np.where(inside[..., None], placed, background)
    landmarks = canonical_landmarks(size) @ rotation.T + offset
    return canvas, landmarks, crop_to_canvas


def test_canonical_landmarks_give_the_identity():
    matrix, half = ffhq_matrix(canonical_landmarks(1024), 1024)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    assert half == pytest.approx(512)


def test_round_trip_recovers_the_crop_and_pastes_back_exactly_outside():
    face = face_256()
    canvas, landmarks, crop_to_canvas = place_in_canvas(
        face, angle_deg=17.0, scale=1.6, offset=(300.0, 120.0), canvas_shape=(700, 900)
    )
    aligned = align_face(canvas, FakeDetector([landmarks], reference_width=900), size=256)  # detected at 800 px
    np.testing.assert_allclose(aligned.matrix, invert_matrix(crop_to_canvas), atol=1e-6)
    # the crop is the face again (resampled twice: once into the canvas, once back)
    assert np.abs(aligned.crop.astype(int) - face.astype(int))[16:-16, 16:-16].mean() < 4
    pasted = paste_back(face, aligned)
    inside = (
        warp(
            np.pad(np.ones((224, 224), np.uint8) * 255, 16),
            crop_to_canvas,
            (900, 700),
            border=cv2.BORDER_CONSTANT,
            interpolation=cv2.INTER_NEAREST,
        )
        > 0
    )
    error = np.abs(pasted.astype(int) - canvas.astype(int))[inside].mean()
    assert error < 2, error  # mean absolute error below 2/255 inside the face region
    far = (
        warp(
            np.full((256, 256), 255, np.uint8),
            crop_to_canvas,
            (900, 700),
            border=cv2.BORDER_CONSTANT,
            interpolation=cv2.INTER_NEAREST,
        )
        == 0
    )
    far = cv2.erode(far.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.array_equal(pasted[far], canvas[far])
    assert pasted.shape == canvas.shape


def test_paste_back_has_no_box_edge():
    face = face_256()
    canvas, landmarks, _ = place_in_canvas(face, 5.0, 1.2, (100.0, 80.0), (500, 500))
    aligned = align_face(canvas, FakeDetector([landmarks]), size=256)
    brighter = np.clip(face.astype(int) + 60, 0, 255).astype(np.uint8)
    pasted = paste_back(brighter, aligned).astype(int)
    # along a row through the face, the change ramps up over several pixels instead of jumping
    change = (pasted - canvas.astype(int)).sum(-1)[250]
    steps = np.abs(np.diff(change))
    assert change.max() > 100 and steps.max() < change.max() / 3


def test_largest_face_first_and_choosing_another():
    face = face_256()
    canvas, big, _ = place_in_canvas(face, 0.0, 1.5, (500.0, 50.0), (600, 1000))
    small = canonical_landmarks(256) * 0.8 + [40.0, 200.0]
    detector = FakeDetector([small, big], reference_width=1000)
    first = align_face(canvas, detector, size=256)
    assert first.face_count == 2 and first.face_index == 0
    np.testing.assert_allclose(first.landmarks, big, rtol=1e-9)
    second = align_face(canvas, detector, size=256, face_index=1)
    np.testing.assert_allclose(second.landmarks, small, rtol=1e-9)
    with pytest.raises(InvalidInputError, match="face_index 2 is out of range: 2 face"):
        align_face(canvas, detector, size=256, face_index=2)


def test_big_photos_are_detected_downscaled_but_pasted_at_full_resolution():
    face = face_256()
    canvas, landmarks, _ = place_in_canvas(face, 0.0, 6.0, (700.0, 300.0), (2400, 3000))
    detector = FakeDetector([landmarks], reference_width=3000)
    aligned = align_face(canvas, detector, size=256)
    assert max(detector.seen_shapes[0][:2]) == DETECT_MAX_SIDE
    np.testing.assert_allclose(aligned.landmarks, landmarks, rtol=1e-9)
    assert paste_back(aligned.crop, aligned).shape == (2400, 3000, 3)


def test_already_aligned_photo_skips_the_warp():
    face = face_256()
    aligned = align_face(face, FakeDetector([canonical_landmarks(256) + 0.5]), size=256)
    assert aligned.skipped and np.array_equal(aligned.crop, face)
    explicit = align_face(face, None, size=128, skip_alignment=True)
    assert explicit.skipped and explicit.crop.shape == (128, 128, 3)
    assert np.array_equal(paste_back(face, align_face(face, None, size=256, skip_alignment=True)), face)


def test_crop_beyond_the_photo_is_padded_with_blurred_reflection():
    face = face_256()
    # the face sits at the photo's left edge: a quarter of the crop falls outside
    canvas = face[:, 64:]
    landmarks = canonical_landmarks(256) - [64, 0]
    aligned = align_face(canvas, FakeDetector([landmarks]), size=256, skip_alignment=False)
    assert np.abs(aligned.crop[:, 80:].astype(int) - face[:, 80:].astype(int)).mean() < 1
    padding = aligned.crop[:, :40].astype(float)
    mirrored = face[:, 128:88:-1].astype(float)
    assert np.abs(padding - mirrored).mean() > 5  # blurred and faded, not a sharp mirror image
    assert padding.std(axis=(0, 1)).mean() < face.astype(float).std(axis=(0, 1)).mean()


@pytest.mark.parametrize(
    "landmark_sets, message",
    [
        ([], "No face was found"),
        ([canonical_landmarks(256) * 0.1 + 100], "too small"),
    ],
)
def test_detection_errors(landmark_sets, message):
    face = face_256()
    detector = FakeDetector(landmark_sets)
    with pytest.raises(InvalidInputError, match=message):
        align_face(face, detector, size=256)


def test_skip_alignment_centre_crops_a_non_square_photo_and_pastes_back():
    y, x = np.mgrid[0:100, 0:120]
    photo = np.stack([x * 2, y * 2, (x + y)], axis=2).astype(np.uint8)  # smooth, so a resize loses little
    aligned = align_face(photo, None, size=64, skip_alignment=True)
    assert aligned.crop.shape == (64, 64, 3) and "120x100" in aligned.note and "centred 100x100" in aligned.note
    square = align_face(np.ascontiguousarray(photo[:, 10:110]), None, size=64, skip_alignment=True)
    assert np.array_equal(aligned.crop, square.crop) and square.note == ""
    pasted = paste_back(aligned.crop, aligned)  # the crop lands back where it came from
    assert pasted.shape == photo.shape and np.array_equal(pasted[:, :10], photo[:, :10])
    assert np.abs(pasted[20:80, 30:90].astype(int) - photo[20:80, 30:90]).mean() < 3


def test_aligned_face_records_the_original():
    face = face_256()
    aligned = align_face(face, None, size=64, skip_alignment=True)
    assert isinstance(aligned, AlignedFace) and aligned.original is face and aligned.size == 64


def test_a_large_photo_is_kept_encoded_and_pastes_back_the_same():
    rng = np.random.default_rng(1)
    photo = np.repeat(np.repeat(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), 8, axis=0), 8, axis=1)  # 2400x3200
    aligned = align_face(photo, None, size=64, skip_alignment=True)
    compact = aligned.compact(max_bytes=1 << 20)
    assert compact.photo_bytes() < photo.nbytes / 4 and np.array_equal(compact.photo(), photo)
    assert np.array_equal(paste_back(aligned.crop, compact), paste_back(aligned.crop, aligned))


def test_the_smallest_face_follows_the_crop_size():
    """A 80 px face is too small for a 256 px crop (at least 96 px) but enough for a 64 px model's crop."""
    photo = np.full((200, 200, 3), 128, np.uint8)
    landmarks = canonical_landmarks(80) + 60  # the FFHQ quad of an 80 px crop: 80 px across
    with pytest.raises(InvalidInputError, match=r"too small \(80 px across\); faces need at least 96 px"):
        align_face(photo, FakeDetector([landmarks]), size=256, skip_alignment=False)
    aligned = align_face(photo, FakeDetector([landmarks]), size=64, skip_alignment=False)
    assert aligned.crop.shape == (64, 64, 3) and not aligned.skipped
