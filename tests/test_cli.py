import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chunky.cli import main
from chunky.editor import ChunkyEditor

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "tiny", "--aligned", "--steps", "3", "--perceptual", "lpips-alex", "--resolution", "32", "--quiet"]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "face.png"
    Image.fromarray(ChunkyEditor.tiny().random_face(3)).save(path)
    return path


@pytest.fixture(scope="module")
def label_png(tmp_path_factory) -> Path:
    labels = np.zeros((64, 64), np.uint8)
    labels[:, 32:] = 5
    labels[40:, :] = 9
    path = tmp_path_factory.mktemp("in") / "labels.png"
    Image.fromarray(labels).save(path)
    return path


def test_invert_with_a_label_png_writes_every_output(tmp_path, photo, label_png):
    out = tmp_path / "out"
    assert main(["invert", str(photo), "--masks", str(label_png), "--keep", "label_9", "--out", str(out), *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["segments"]) == ["label_0", "label_5", "label_9"]
    assert metrics["segments"]["label_9"] == {"lpips": 0.0, "l2": 0.0, "total": 0.0, "kept": True}
    for name in ("label_0", "label_5"):
        assert metrics["segments"][name]["lpips"] > 0 and metrics["segments"][name]["l2"] > 0
    assert metrics["composite"]["lpips"] > 0 and metrics["composite"]["l2"] > 0 and metrics["steps_run"] == 3
    assert metrics["config"]["steps"] == 3 and metrics["seconds"] > 0
    assert sorted(p.name for p in (out / "renders").iterdir()) == ["00_label_0.png", "01_label_5.png", "02_label_9.png"]
    composite = np.asarray(Image.open(out / "edited.png"))
    photo_pixels = np.asarray(Image.open(photo))
    assert np.array_equal(composite[40:], photo_pixels[40:])  # the kept segment is the photo
    assert not np.array_equal(composite[:40], photo_pixels[:40])
    work = torch.load(out / "work.pt", weights_only=True)
    assert work["result"]["codes"].shape == (2, 10, 64) and work["result"]["projected"] == [0, 1]
    assert work["names"][2] == "label_9" and work["format"] == "chunky-work"
    assert {"pasted_back.png", "aligned_crop.png", "comparison.png"} <= {p.name for p in out.iterdir()}
    labels = np.asarray(Image.open(label_png))
    assert np.array_equal(np.asarray(Image.open(out / "masks.png")), (labels == 5) * 1 + (labels == 9) * 2)


def test_invert_with_a_mask_folder_names_segments_by_file(tmp_path, photo):
    folder = tmp_path / "masks"
    folder.mkdir()
    top = np.zeros((64, 64), np.uint8)
    top[:32] = 255
    Image.fromarray(top).save(folder / "hair.png")
    Image.fromarray(255 - top).save(folder / "skin.png")
    assert main(["invert", str(photo), "--masks", str(folder), "--out", str(tmp_path / "out"), *FAST]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics["segments"]) == ["hair", "skin"]


def test_invert_global_is_the_baseline(tmp_path, photo):
    assert main(["invert", str(photo), "--global", "--out", str(tmp_path / "out"), "--space", "w", *FAST]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics["segments"]) == ["global"]
    assert torch.load(tmp_path / "out" / "work.pt", weights_only=True)["result"]["codes"].shape == (1, 64)


def test_cached_second_run_does_not_optimise(tmp_path, photo, label_png):
    args = ["invert", str(photo), "--masks", str(label_png), "--cache", str(tmp_path / "cache"), *FAST]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert first["seconds"] == second["seconds"]  # the stored result, not a new run
    codes = [torch.load(tmp_path / d / "work.pt", weights_only=True)["result"]["codes"] for d in ("a", "b")]
    assert torch.equal(*codes)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d.joinpath("x.png").write_bytes(b"not an image") and d / "x.png", "not an image in a known format"),
        (lambda d: Image.new("RGB", (96, 40)).save(d / "wide.png") or d / "wide.png", "at least 64"),
        (lambda d: d / "missing.png", "does not exist"),
    ],
)
def test_bad_photo_gives_a_clear_error_and_exit_code_2(tmp_path, capsys, make, message):
    assert main(["invert", str(make(tmp_path)), "--out", str(tmp_path / "out"), *FAST]) == 2
    assert message in capsys.readouterr().err


def test_unknown_keep_name_is_a_clear_error(tmp_path, capsys, photo, label_png):
    assert main(["invert", str(photo), "--masks", str(label_png), "--keep", "hair", "--out", str(tmp_path), *FAST]) == 2
    assert "no segment named 'hair'" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path, photo):
    done = subprocess.run(
        [sys.executable, "-m", "chunky", "invert", str(photo), "--global", "--out", str(tmp_path / "out"), *FAST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "composite LPIPS" in done.stdout and (tmp_path / "out" / "edited.png").exists()


def test_without_masks_the_photo_is_parsed_automatically(tmp_path, photo, monkeypatch):
    labels = np.zeros((64, 64), np.int64)
    labels[:, 32:] = 17  # hair on the right, background on the left

    class FakeParser:
        def parse(self, crop):
            assert crop.shape == (64, 64, 3)
            return labels

    monkeypatch.setattr(ChunkyEditor, "parser", lambda self: FakeParser())
    assert main(["invert", str(photo), "--out", str(tmp_path / "out"), *FAST]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics["segments"]) == ["hair", "background"]
    assert np.asarray(Image.open(tmp_path / "out" / "pasted_back.png")).shape == (64, 64, 3)


def test_test_mode_segments_with_the_built_in_layout(tmp_path, photo):
    assert main(["invert", str(photo), "--keep", "background", "--out", str(tmp_path / "out"), *FAST]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"skin", "hair", "eyes", "mouth", "background"} <= set(metrics["segments"])
    assert metrics["segments"]["background"]["kept"]


def test_open_re_exports_a_work_file_exactly(tmp_path, photo):
    assert main(["invert", str(photo), "--keep", "background", "--out", str(tmp_path / "a"), *FAST]) == 0
    assert main(["open", str(tmp_path / "a" / "work.pt"), "--model", "tiny", "--out", str(tmp_path / "b")]) == 0
    for name in ("edited.png", "pasted_back.png", "aligned_crop.png", "comparison.png"):
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "a" / name)), np.asarray(Image.open(tmp_path / "b" / name))
        )


def test_open_refuses_what_is_not_a_work_file(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"not a torch file")
    assert main(["open", str(tmp_path / "x.pt"), "--model", "tiny", "--out", str(tmp_path / "out")]) == 2
    assert "not a chunky work file" in capsys.readouterr().err
