"""Edits whose locality is measured: the preservation figures on known cases, on real photos with the small face
model (an edit of the mouth leaves every pixel outside its region as it was; the same edit of one global W+ code
changes most of the face), and one edit over a folder of photos (`chunky batch`), resumable."""

import json
import math

import numpy as np
import pytest

from chunky.batch import photos_in, run_batch
from chunky.cli import main, parse_edits
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError
from chunky.images import read_image
from chunky.losses import build_perceptual
from chunky.preservation import preservation
from chunky.session import Session
from tests.conftest import shared_file

LIGHT = "Light: dark to bright (component 1)"  # one of the small model's own directions


def test_the_figures_on_a_case_whose_answer_is_known():
    rng = np.random.default_rng(0)
    reconstruction = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    region = np.zeros((32, 32), bool)
    region[8:16, 8:16] = True  # 64 pixels inside, 960 outside
    edited = reconstruction.copy()
    edited[region] = 255 - edited[region]  # inside: a known change
    figures = preservation(reconstruction, reconstruction, edited, region)
    assert figures.outside_changed_share == 0 and math.isinf(figures.outside_psnr_db)
    assert figures.outside_max_change == 0 and figures.region_share == 64 / 1024
    expected_inside = np.abs(255 - 2 * reconstruction[region].astype(int)).mean()
    assert figures.inside_mean_change == pytest.approx(expected_inside)
    edited[0, :12] = np.clip(edited[0, :12].astype(int) + 3, 0, 255)  # 12 pixels outside move by up to 3 levels
    moved = (np.abs(edited[~region].astype(int) - reconstruction[~region]) > 2).any(axis=1).sum()
    figures = preservation(reconstruction, reconstruction, edited, region)
    assert figures.outside_changed_share == pytest.approx(moved / 960) and 0 < moved <= 12
    assert figures.outside_max_change == 3 and 40 < figures.outside_psnr_db < 80
    assert figures.to_dict()["outside_psnr_db"] == figures.outside_psnr_db


def test_outside_lpips_sees_only_the_outside():
    perceptual = build_perceptual("lpips-alex", pretrained_backbone=False)
    rng = np.random.default_rng(1)
    reconstruction = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    region = np.zeros((64, 64), bool)
    region[20:40, 20:40] = True
    edited = reconstruction.copy()
    edited[region] = 0
    assert preservation(reconstruction, reconstruction, edited, region, perceptual=perceptual).outside_lpips == 0
    edited[:10] = 0
    assert preservation(reconstruction, reconstruction, edited, region, perceptual=perceptual).outside_lpips > 0


@pytest.fixture(scope="module")
def small():
    return ChunkyEditor.small()


def test_a_mouth_edit_keeps_every_pixel_outside_the_mouth_while_one_global_code_changes_the_face(small):
    """On a real photo with the small model: the chunky edit of the mouth is local to the bit; the same edit of
    the global W+ code changes most of the image outside the mouth."""
    session = Session.start(small, read_image(shared_file("faces/aligned1024/16_01.png")))
    session.invert(small.preset("preview"), baselines=True)
    session.set_edit({LIGHT: 2.5}, ["mouth"])
    identity = small.identity()
    local = session.preservation(identity=identity)
    assert local.outside_changed_share == 0 and math.isinf(local.outside_psnr_db) and local.outside_max_change == 0
    assert local.inside_mean_change > 5 and 0 < local.region_share < 0.2
    assert local.identity_name == "dlib identity distance" and local.identity_edit > 0
    global_edit, one_code = session.global_preservation(identity=identity)
    assert global_edit.shape == session.display().shape
    assert one_code.outside_changed_share > 0.5 and one_code.outside_psnr_db < 30
    session.set_edit({LIGHT: 0.0}, ["mouth"])
    assert session.preservation() is None  # no edit, no figures


def test_the_global_comparison_needs_the_global_code(small):
    session = Session.start(small, read_image(shared_file("faces/aligned1024/16_01.png")))
    session.invert(small.preset("preview"))
    session.set_edit({LIGHT: 1.0}, ["mouth"])
    with pytest.raises(InvalidInputError, match="global baselines"):
        session.global_preservation()


def test_edit_arguments_are_parsed_or_refused_clearly():
    assert parse_edits(["smile=1.5", "Light: dark to bright (component 1)=-2"]) == {
        "smile": 1.5,
        "Light: dark to bright (component 1)": -2.0,
    }
    for bad in ("smile", "=2", "smile=x", "smile=nan"):
        with pytest.raises(InvalidInputError, match="DIRECTION=VALUE"):
            parse_edits([bad])


def test_batch_over_real_photos_writes_one_grid_and_table_and_a_second_run_skips_finished_photos(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("000001.png", "000002.png", "000003.png"):
        (photos / name).write_bytes(shared_file(f"faces/aligned256/{name}").read_bytes())
    (photos / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    command = ["batch", str(photos), "--model", "small", "--edit", f"{LIGHT}=2.5", "--segments", "mouth"]
    command += ["--compare-global", "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert main(command) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["photos"]) == ["000001.png", "000002.png", "000003.png"]
    assert list(summary["errors"]) == ["broken.png"] and summary["skipped"] == []
    for figures in summary["photos"].values():
        assert figures["chunky"]["outside_changed_share"] == 0 and figures["global W+"]["outside_changed_share"] > 0.5
    grid = read_image(out / "summary.png")
    assert grid.shape[0] > 3 * 256 and grid.shape[1] > 4 * 256  # three rows, four columns
    table = (out / "summary.md").read_text()
    assert table.count("| chunky |") == 3 and table.count("| global W+ |") == 3 and "Skipped broken.png" in table
    assert (out / "000001" / "pasted_back.png").is_file() and (out / "000001" / "work.pt").is_file()
    written = (out / "000002" / "figures.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(command) == 0
    assert "0 photos edited, 3 already done, 1 failed" in capsys.readouterr().out
    assert (out / "000002" / "figures.json").stat().st_mtime_ns == written


def test_batch_refuses_an_empty_edit_and_a_missing_folder(tmp_path, small):
    with pytest.raises(InvalidInputError, match="not a folder"):
        photos_in(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="Give the edit"):
        run_batch(small, [], tmp_path, config=small.preset("preview"), strengths={})
