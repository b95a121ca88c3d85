"""The bundled small face model on faces: it draws faces a real detector finds, its W space stays faces, it
follows its teacher, and per-segment codes beat one code on real photos (L2 and identity)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from chunky.editor import SMALL_TEMPLATE, ChunkyEditor
from chunky.evaluate import METHODS, method_config
from chunky.images import read_image, tensor_to_uint8
from chunky.metrics import l2_distance
from tests.conftest import shared_file

dlib_faces = pytest.importorskip("chunky.dlib_faces")
if not dlib_faces.available():
    pytest.skip("needs dlib-bin and face-recognition-models (requirements.txt)", allow_module_level=True)

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def editor():
    return ChunkyEditor.small()


def detection_rate(detector, images: torch.Tensor) -> float:
    return float(np.mean([bool(detector.detect(tensor_to_uint8(image))) for image in images]))


@torch.no_grad()
def test_dlib_finds_a_face_in_many_samples_at_the_default_truncation(editor):
    G = editor.generator
    z = torch.randn(60, G.style_dim, generator=torch.Generator().manual_seed(11))
    rate = detection_rate(editor.detector(), G.synthesis(G.mapping(z, truncation_psi=0.7)))
    # docs/small-model.md: 91% of 200 samples (tools/small_model_report.py; the goal is 80%). The distilled model
    # before its learned mapping scored 56.5%; one that draws no faces (random weights, a broken mapping) 0.
    assert rate >= 0.75, rate


@torch.no_grad()
def test_w_interpolations_and_style_mixes_stay_faces(editor):
    G = editor.generator
    rng = torch.Generator().manual_seed(12)
    w1 = G.mapping(torch.randn(30, G.style_dim, generator=rng), truncation_psi=0.7)
    w2 = G.mapping(torch.randn(30, G.style_dim, generator=rng), truncation_psi=0.7)
    middle = detection_rate(editor.detector(), G.synthesis((w1 + w2) / 2))
    mixed = torch.cat([w1[:, None].expand(-1, 4, -1), w2[:, None].expand(-1, G.n_latent - 4, -1)], dim=1)
    mixes = detection_rate(editor.detector(), G.synthesis(mixed))
    assert middle >= 0.8 and mixes >= 0.8, (middle, mixes)  # 98.5% and 94% of 200 in docs/small-model.md


def test_the_template_is_where_the_samples_put_their_faces(editor):
    G = editor.generator
    with torch.no_grad():
        images = G.synthesis(G.mapping(torch.randn(30, G.style_dim, generator=torch.Generator().manual_seed(13)), 0.7))
    found = [editor.detector().detect(tensor_to_uint8(image)) for image in images]
    points = np.stack([faces[0].landmarks / G.size for faces in found if faces])
    assert np.abs(np.median(points, axis=0) - np.array(SMALL_TEMPLATE.points)).max() < 0.04


@pytest.mark.skipif(
    importlib.util.find_spec("gan_face_generate") is None,
    reason="the teacher needs `pip install --no-deps gan-face-generate==1.1.1` (.ci/run installs it)",
)
def test_the_student_follows_its_teacher_per_z(editor):
    import sys

    sys.path.insert(0, str(TOOLS))
    from distill_small_model import load_teacher, per_z_error

    teacher = load_teacher()
    error = per_z_error(editor.generator, teacher, count=64)
    with torch.no_grad():  # the same z, shuffled: a generator that ignored z would score the same
        z = torch.randn(64, 100, generator=torch.Generator().manual_seed(12345))
        images = teacher(z)
        unrelated = float((images - images.roll(1, dims=0)).abs().mean())
    assert error < 0.45 * unrelated, (error, unrelated)  # 0.156 here; the distilled model before remapping: 0.28


def test_per_segment_codes_beat_one_code_on_real_photos(editor):
    """The paper's claim on real faces, with the evaluation's recipe and the same number of steps for both: well
    under the global code's L2 on every photo (issue 21's goal: 0.6x on average), and closer to the photo's
    identity by dlib's distance on every photo."""
    l2_ratios, identity_gains = [], []
    identity = editor.identity()
    for name in ("faces/aligned256/000001.png", "faces/aligned256/000004.png", "faces/aligned1024/16_01.png"):
        aligned = editor.align(read_image(shared_file(name)), skip_alignment=False)  # the small model's own crop
        segments = editor.segment(aligned.crop)
        assert {"skin", "eyes", "mouth"} <= set(segments.names)
        chunky = editor.invert(aligned.crop, segments, config=method_config(editor, METHODS["chunky-w+"], 60, "none"))
        single = editor.invert(aligned.crop, None, config=method_config(editor, METHODS["w+"], 60, "none"))
        l2_ratios.append(
            float(l2_distance(chunky.composite, chunky.target) / l2_distance(single.composite, single.target))
        )
        single_distance = identity.distance(single.composite, single.target)
        identity_gains.append(float(single_distance - identity.distance(chunky.composite, chunky.target)))
    # Measured: L2 ratios 0.56, 0.47, 0.50; identity gains 0.082, 0.073, 0.176. With every segment starting at
    # w_avg instead (no warm start) the gains were 0.024, 0.011, 0.016.
    assert max(l2_ratios) < 0.7 and np.mean(l2_ratios) < 0.6, l2_ratios
    assert min(identity_gains) > 0.03, identity_gains


def test_the_app_serves_the_small_model_when_the_ffhq_model_cannot_be_had(monkeypatch):
    from chunky.editor import editor_from_environment

    monkeypatch.delenv("CHUNKY_MODEL", raising=False)
    editor, notice = editor_from_environment()  # offline here, no FFHQ weights
    assert editor is not None and editor.generator.size == 64
    assert "small face model" in notice and "CHUNKY_WEIGHTS_DIR=<folder>" in notice
    monkeypatch.setenv("CHUNKY_MODEL", "ffhq")  # asked for by name: no substitute, the reason instead
    editor, error = editor_from_environment()
    assert editor is None and "CHUNKY_WEIGHTS_DIR=<folder>" in error
    monkeypatch.setenv("CHUNKY_MODEL", "small")
    editor, notice = editor_from_environment()
    assert editor.label.startswith("Small face model") and notice == ""


def test_the_distillation_sets_an_exact_affine_mapping_and_changes_no_image():
    """tools/distill_small_model.py's last step: the mapping computes offset + mean + M PixelNorm(z) exactly, and
    the modulation biases absorb the offset, so images are those of the code mean + M PixelNorm(z)."""
    import copy
    import sys

    from chunky.generator import random_generator

    sys.path.insert(0, str(TOOLS))
    from distill_small_model import set_affine_mapping

    G = random_generator(32, 32, 4, seed=3)
    before = copy.deepcopy(G)
    rng = torch.Generator().manual_seed(0)
    mean, A, B = (
        torch.randn(32, generator=rng) * 0.1,
        torch.randn(32, 20, generator=rng) * 0.05,
        torch.randn(32, 12, generator=rng) * 0.05,
    )
    set_affine_mapping(G, mean, A, B, offset=3.0)
    z = torch.randn(8, 32, generator=rng)
    normalised = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True))
    code = mean + normalised @ torch.cat([A, B], dim=1).T
    with torch.no_grad():
        assert torch.allclose(G.mapping(z), code + 3.0, atol=1e-4)
        assert torch.allclose(G.synthesis(G.mapping(z)), before.synthesis(code), atol=1e-4)


def test_the_presets_bench_on_faces_ranks_the_recipes_on_a_real_photo(capsys):
    """`bench presets-faces` on the astronaut at a fifth of every step count: each recipe's figures are
    measured on the photo, and the longer recipes fit it closer (quick run: L2 0.122, 0.053, 0.028)."""
    from chunky.bench import astronaut_photo, bench_presets_on_faces, print_presets_on_faces_table

    rows = bench_presets_on_faces([str(astronaut_photo())], scale=0.2)
    by_name = {row["variant"]: row for row in rows}
    assert list(by_name) == ["today", "preview", "balanced", "best", "joint"]
    for row in rows:
        assert row["photos"] == 1 and row["wall_s"] > 0 and 0 < row["l2"] < 1 and 0 < row["identity"] < 2
    assert by_name["best"]["l2"] < by_name["balanced"]["l2"] < by_name["preview"]["l2"]
    # one global code's L2 divides every recipe's: the ratios rank the recipes as their L2 does
    assert by_name["best"]["ratio"] < by_name["balanced"]["ratio"] < by_name["preview"]["ratio"]
    print_presets_on_faces_table(rows, 0.2)
    out = capsys.readouterr().out
    assert "on 1 real photo, small face model" in out and "step counts x0.2" in out
    assert out.count("\n") == 7
