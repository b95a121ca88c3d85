import json

import numpy as np
import pytest
import torch
from PIL import Image

from chunky.editor import ChunkyEditor
from chunky.evaluate import evaluate
from chunky.images import tensor_to_uint8
from chunky.losses import build_perceptual
from chunky.metrics import l2_distance, lpips_distance
from chunky.segmentation import LayoutParser, Segmentation


@pytest.fixture(scope="module")
def editor():
    return ChunkyEditor.tiny()


def test_metrics_are_zero_for_identical_images_and_grow_with_noise(editor):
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    perceptual = build_perceptual("lpips-alex", pretrained_backbone=False)
    lpips_values = [float(lpips_distance(image, image + s * noise, perceptual)[0]) for s in (0, 0.1, 0.3)]
    l2_values = [float(l2_distance(image, image + s * noise)[0]) for s in (0, 0.1, 0.3)]
    assert lpips_values[0] == 0 and l2_values[0] == 0
    assert lpips_values[0] < lpips_values[1] < lpips_values[2] and l2_values[0] < l2_values[1] < l2_values[2]
    identity = editor.identity()
    assert abs(float(identity.distance(image, image)[0])) < 1e-5


def composite_faces(editor, folder, count):
    """Targets made of one code per face-layout segment (each segment a different random face)."""
    G = editor.generator
    segments = Segmentation.from_parsing(LayoutParser().parse(np.zeros((64, 64, 3), np.uint8)), min_fraction=0)
    for i in range(count):
        z = torch.randn(len(segments.names), G.style_dim, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            renders = G.synthesis(G.mapping(z, truncation_psi=0.5))
        target = (renders * segments.masks).sum(dim=0, keepdim=True)
        Image.fromarray(tensor_to_uint8(target)).save(folder / f"face{i}.png")


def test_evaluate_table_on_tiny_composites_ranks_chunky_below_global_on_l2(editor, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    composite_faces(editor, images, 2)
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    summary = evaluate(editor, images, out, methods=["w+", "chunky-w+"], steps=40, keep=(), perceptual_loss="none")
    assert summary["images"] == 2 and list(summary["errors"]) == ["broken.png"]
    table = summary["table"]
    for method in ("w+", "chunky-w+"):
        for metric in ("l2", "identity", "seconds"):
            mean, std = table[method][metric]
            assert np.isfinite(mean) and np.isfinite(std) and std >= 0
        assert table[method]["lpips"] is None  # no ImageNet backbone in test mode: not reported, not invented
    assert table["chunky-w+"]["l2"][0] < table["w+"]["l2"][0]  # the method's claim, measured
    pair = summary["pairs"]["chunky-w+ vs w+"]
    assert sorted(pair["l2_ratio"]) == ["face0.png", "face1.png"] and all(r < 1 for r in pair["l2_ratio"].values())
    assert pair["l2_ratio_mean"] == pytest.approx(np.mean(list(pair["l2_ratio"].values())))
    markdown = (out / "table.md").read_text()
    assert "| chunky-w+ |" in markdown and "0.319 / 0.094 / 0.021" in markdown and "broken.png" in markdown
    assert "chunky-w+ vs w+: L2 ratio" in markdown and "| face0.png |" in markdown
    assert "1 - cos ArcFace (fixed crop)" in markdown and "CurricularFace, MTCNN; not comparable" in markdown
    assert (out / "table.csv").read_text().count("\n") == 3 and (out / "grid.png").exists()
    assert json.loads((out / "results.json").read_text())["images"] == 2

    again = evaluate(editor, images, out, methods=["w+", "chunky-w+"], steps=40, keep=(), perceptual_loss="none")
    assert again["table"] == table  # resumed from the stored per-image results, not recomputed
