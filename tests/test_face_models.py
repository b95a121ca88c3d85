"""The real facexlib networks, loaded through the registry from stand-in weight files (random values,
the real key names and shapes) placed in a temporary Hugging Face cache. No network."""

import io
import warnings

import numpy as np
import pytest
import torch

from chunky.compat import ensure_torchvision
from chunky.errors import CheckpointError, WeightsUnavailableError
from chunky.face_models import DETECTOR_WEIGHTS, PARSER_WEIGHTS, BiSeNetParser, RetinaFaceDetector
from chunky.weights import lookup
from tests.conftest import write_hf_cache_file


def state_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stand_in_cache(tmp_path_factory):
    ensure_torchvision()
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.bisenet import BiSeNet

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        detector = RetinaFace(network_name="resnet50", device=torch.device("cpu"))
    cache = tmp_path_factory.mktemp("hf")
    # facexlib's released detector file stores keys with a "module." prefix (trained with DataParallel)
    detector_state = {"module." + k: v for k, v in detector.state_dict().items()}
    mirror = lookup(DETECTOR_WEIGHTS).mirrors[0]
    write_hf_cache_file(cache, mirror.repo, mirror.file, state_bytes(detector_state))
    mirror = lookup(PARSER_WEIGHTS).mirrors[0]
    write_hf_cache_file(cache, mirror.repo, mirror.file, state_bytes(BiSeNet(num_class=19).state_dict()))
    return cache


def test_detector_loads_from_the_hub_cache_and_returns_faces_with_five_landmarks(stand_in_cache, unpinned_registry):
    detector = RetinaFaceDetector(cache_dir=stand_in_cache, min_score=0.0)
    faces = detector.detect((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    assert faces, "random weights with min_score 0 keep at least one box"
    assert all(f.landmarks.shape == (5, 2) and f.box.shape == (4,) and 0 <= f.score <= 1 for f in faces)


def test_parser_loads_from_the_hub_cache_and_returns_celebamask_labels(stand_in_cache, unpinned_registry):
    parser = BiSeNetParser(cache_dir=stand_in_cache)
    labels = parser.parse((np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8))
    assert labels.shape == (96, 96) and labels.dtype == np.int64
    assert 0 <= labels.min() and labels.max() <= 18


def test_weights_of_the_wrong_network_are_a_clear_error(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match="do not fit the network"):
        BiSeNetParser(path)


class _RunsCode:
    def __reduce__(self):
        import os

        return os.system, ("touch /tmp/chunky-pwned-by-pickle",)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="could not be read safely"):
        BiSeNetParser(path)
    import os

    assert not os.path.exists("/tmp/chunky-pwned-by-pickle")


def test_missing_weights_offline_name_the_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match=PARSER_WEIGHTS):
        BiSeNetParser(cache_dir=tmp_path)
