"""The offline face pipeline on real faces: dlib's detector and landmarks, the FFHQ crop they give, the landmark
segmenter, dlib's identity embedding, and the editor's fallback to them when the Hub's face models are missing."""

import numpy as np
import pytest
import torch
from PIL import Image

from chunky.align import FFHQ_TEMPLATE, FaceTemplate, align_face, similarity_fit
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError
from chunky.images import read_image, uint8_to_tensor
from chunky.segmentation import CELEBAMASK_LABELS
from tests.conftest import shared_file

dlib_faces = pytest.importorskip("chunky.dlib_faces")
if not dlib_faces.available():
    pytest.skip("needs dlib-bin and face-recognition-models (requirements.txt)", allow_module_level=True)

PHOTOS_256 = [f"faces/aligned256/{i:06d}.png" for i in range(1, 13)]  # the 12 photos (13-19 are paintings)


@pytest.fixture(scope="module")
def detector():
    return dlib_faces.DlibDetector()


def deviation_from_identity(matrix: np.ndarray, size: int) -> float:
    """How far (as a share of the side) a crop matrix moves the corners of a size x size photo."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    return float(np.abs(corners @ (matrix - np.eye(2, 3)).T).max() / size)


def test_aligning_an_ffhq_aligned_photo_again_is_close_to_the_identity(detector):
    deviations = []
    for relative in PHOTOS_256:
        photo = read_image(shared_file(relative))
        (face,) = detector.detect(photo)
        matrix, _ = FFHQ_TEMPLATE.matrix(face.landmarks, photo.shape[0])
        deviations.append(deviation_from_identity(matrix, photo.shape[0]))
    # measured: median 0.8% of the side, worst 4.8% (a face with glasses); FFHQ itself was made with these landmarks
    assert np.median(deviations) < 0.015, deviations
    assert max(deviations) < 0.06, deviations


def test_align_face_with_dlib_finds_the_face_and_keeps_an_aligned_photo_as_it_is(detector):
    photo = read_image(shared_file("faces/aligned256/000001.png"))
    aligned = align_face(photo, detector, size=256)
    assert aligned.skipped and aligned.face_count == 1  # near identity: taken as aligned, not warped
    assert np.array_equal(aligned.crop, photo)


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_fit(source, source @ rotation.T + shift)
    assert np.allclose(matrix, np.concatenate([rotation, shift[:, None]], axis=1), atol=1e-9)


def test_a_template_crop_puts_the_landmarks_where_the_template_says():
    template = FaceTemplate("test", ((0.35, 0.47), (0.65, 0.47), (0.5, 0.66), (0.37, 0.81), (0.63, 0.81)))
    landmarks = np.array([[100.0, 120], [160, 118], [131, 160], [108, 190], [152, 189]])
    matrix, half = template.matrix(landmarks, 64)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - template.landmarks(64)).max() < 3.0  # a similarity fit of 5 real-looking points
    assert half == pytest.approx(32 / np.hypot(*matrix[:, 0]))


def test_landmark_segments_sit_on_the_landmarks():
    parser = dlib_faces.LandmarkParser()
    crop = read_image(shared_file("faces/aligned256/000003.png"))
    points = parser.landmarks(crop)
    labels = parser.parse(crop)
    names = {index: CELEBAMASK_LABELS[index] for index in range(len(CELEBAMASK_LABELS))}

    def label_at(point):
        x, y = np.floor(point).astype(int)
        return names[int(labels[y, x])]

    assert label_at(points[36:42].mean(0)) == "l_eye" and label_at(points[42:48].mean(0)) == "r_eye"
    assert label_at(points[33] + [0, -3]) == "nose"  # just above the nostrils' middle
    assert label_at(points[19] + [0, 1]) == "l_brow" and label_at(points[24] + [0, 1]) == "r_brow"
    assert label_at((points[51] + points[62]) / 2) == "u_lip" and label_at((points[57] + points[66]) / 2) == "l_lip"
    assert label_at(points[29] + [(points[15][0] - points[29][0]) / 2, 0]) == "skin"  # the cheek
    assert labels[0, 0] == 0 and labels[-1, -1] == 0  # the corners are background
    skin_share = (labels == 1).mean()
    assert 0.15 < skin_share < 0.5, skin_share


def test_dlib_identity_tells_the_same_person_from_others():
    identity = dlib_faces.DlibIdentity()
    names = ["20_01", "21_01", "1", "5_01", "16_01", "c1_01"]  # 20_01 and 21_01 are the same person
    embeddings = {n: identity.embed_uint8(read_image(shared_file(f"faces/aligned1024/{n}.png"))) for n in names}
    same = np.linalg.norm(embeddings["20_01"] - embeddings["21_01"])
    others = [np.linalg.norm(embeddings["20_01"] - embeddings[n]) for n in names[2:]]
    assert same < dlib_faces.SAME_PERSON < min(others), (same, others)  # measured 0.38 vs >= 0.72


def test_identity_distance_takes_image_tensors():
    identity = dlib_faces.DlibIdentity()
    photo = read_image(shared_file("faces/aligned256/000001.png"))
    tensor = uint8_to_tensor(photo)
    flipped = tensor.flip(-1)
    distance = identity.distance(torch.cat([tensor, tensor]), torch.cat([tensor, flipped]))
    assert distance.shape == (2,)
    assert distance[0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < distance[1] < dlib_faces.SAME_PERSON  # a mirrored face is still the same person


def test_the_editor_falls_back_to_the_offline_face_models_when_the_hub_has_none(tiny_generator):
    from chunky.editor import ChunkyEditor

    editor = ChunkyEditor(tiny_generator, device="cpu")  # face models wanted; HF_HUB_OFFLINE and no cached weights
    assert isinstance(editor.detector(), dlib_faces.DlibDetector)
    assert isinstance(editor.parser(), dlib_faces.LandmarkParser)
    assert isinstance(editor.identity(), dlib_faces.DlibIdentity)


class NoFaces:
    """A detector that finds nothing: detection made to fail."""

    def detect(self, image):
        return []


def crop_corners(aligned, size):
    """The crop's four corners in photo pixels [4, 2]."""
    matrix = np.vstack([aligned.matrix, [0, 0, 1]])
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float)
    return (np.linalg.inv(matrix) @ corners.T).T[:, :2]


def test_five_clicked_points_give_the_detectors_crop_when_detection_fails(detector, tmp_path):
    """A real aligned face placed off-centre in a larger canvas (so the crop must be warped): detection is made
    to fail; the five points clicked where dlib put them (whole pixels) give its crop within 1 px, through the
    library, the CLI and the work file."""
    face = read_image(shared_file("faces/aligned1024/16_01.png"))[::2, ::2]  # 512 px
    photo = np.full((700, 900, 3), 128, np.uint8)
    photo[100:612, 300:812] = face
    found = align_face(photo, detector, size=256)
    with pytest.raises(Exception, match="No face was found"):
        align_face(photo, NoFaces(), size=256)
    clicked = np.round(found.landmarks)
    placed = align_face(photo, NoFaces(), size=256, landmarks=clicked)
    assert np.abs(crop_corners(placed, 256) - crop_corners(found, 256)).max() < 1.0
    assert "placed by hand" in placed.note
    assert np.abs(placed.crop.astype(int) - found.crop.astype(int)).mean() < 2

    from chunky.cli import main
    from chunky.workfile import read_work

    Image.fromarray(photo).save(tmp_path / "photo.png")
    points = ",".join(f"{v:.0f}" for v in clicked.ravel())
    command = ["invert", str(tmp_path / "photo.png"), "--model", "small", "--landmarks", points]
    assert main(command + ["--steps", "1", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    reopened = read_work(ChunkyEditor.small(), tmp_path / "out" / "work.pt")
    assert np.array_equal(reopened.aligned.landmarks, clicked)


@pytest.mark.parametrize(
    "points, words",
    [
        (np.zeros((4, 2)), "Place five points"),
        (np.full((5, 2), np.nan), "Place five points"),
        (np.array([[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]]) * 100.0, "inside the"),
        (np.array([[10, 30], [30, 30], [20, 20], [12, 10], [28, 10]]), "do not make a face"),
    ],
)
def test_misplaced_points_are_refused_clearly(points, words):
    with pytest.raises(InvalidInputError, match=words):
        align_face(np.zeros((64, 64, 3), np.uint8), NoFaces(), size=64, landmarks=points)
