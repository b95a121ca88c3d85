import numpy as np
import pytest
import torch
from PIL import Image

from chunky.errors import InvalidInputError
from chunky.segmentation import CELEBAMASK_LABELS, FACE_GROUPS, Segmentation


def every_label_map(size=64) -> np.ndarray:
    """All 19 labels, each a horizontal band of 3+ rows (so none is tiny)."""
    rows = np.arange(size) * 19 // size
    return np.repeat(rows[:, None], size, axis=1).astype(np.int64)


def test_every_parsing_label_lands_in_exactly_one_named_segment():
    labels = every_label_map()
    seg = Segmentation.from_parsing(labels, min_fraction=0)
    assert seg.names == tuple(FACE_GROUPS)  # all groups present, in table order
    coverage = seg.masks.sum(dim=0)[0]
    assert torch.equal(coverage, torch.ones_like(coverage))  # every pixel exactly once
    for name, members in FACE_GROUPS.items():
        expected = torch.from_numpy(np.isin(labels, members)).float()
        assert torch.equal(seg.masks[seg.index(name), 0], expected), name
    assert sorted(label for group in FACE_GROUPS.values() for label in group) == list(range(len(CELEBAMASK_LABELS)))


def test_groups_are_data_and_can_be_merged_or_split():
    labels = every_label_map()
    custom = dict(FACE_GROUPS)
    custom.pop("eyes")
    custom["left_eye"], custom["right_eye"] = (4,), (5,)
    seg = Segmentation.from_parsing(labels, custom, min_fraction=0)
    assert "left_eye" in seg.names and "right_eye" in seg.names and "eyes" not in seg.names
    merged = seg.merge(["left_eye", "right_eye"], "eyes")
    assert "eyes" in merged.names and len(merged.names) == len(seg.names) - 1
    assert torch.equal(merged.masks[merged.index("eyes"), 0], torch.from_numpy(np.isin(labels, (4, 5))).float())
    with pytest.raises(InvalidInputError, match="belong to no group"):
        Segmentation.from_parsing(labels, {"skin": (1,)})


def test_tiny_segments_join_their_longest_bordering_neighbour():
    labels = np.full((100, 100), 1)  # skin
    labels[:, 60:] = 17  # hair
    labels[40:42, 20:22] = 4  # a 4-pixel eye inside the skin
    seg = Segmentation.from_parsing(labels)
    assert seg.names == ("skin", "hair")
    assert seg.masks[0, 0, 40, 20] == 1 and seg.masks[:, 0].sum(0).eq(1).all()


def test_sketch_changes_only_painted_pixels():
    seg = Segmentation.from_parsing(every_label_map(), min_fraction=0)
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[10:20, 30:40] = (255, 0, 0, 255)
    painted = seg.apply_sketch("hair", layer)
    inside = np.zeros((64, 64), bool)
    inside[10:20, 30:40] = True
    assert torch.equal(painted.masks[:, 0, ~inside], seg.masks[:, 0, ~inside])
    assert painted.masks[painted.index("hair"), 0, inside].eq(1).all()
    assert painted.masks[:, 0, inside].sum(0).eq(1).all()  # nothing else keeps those pixels
    erased = painted.erase_sketch("hair", layer)
    assert erased.masks[erased.index("hair"), 0, inside].eq(0).all()
    assert torch.equal(erased.masks[:, 0, ~inside], seg.masks[:, 0, ~inside])
    with pytest.raises(InvalidInputError, match="RGBA"):
        seg.apply_sketch("hair", layer[..., :3])
    with pytest.raises(InvalidInputError, match="32x32 but the segments are 64x64"):
        seg.apply_sketch("hair", layer[:32, :32])


def test_dilate_erode_area_and_overlay():
    labels = np.zeros((64, 64), np.int64)
    labels[20:40, 20:40] = 1
    seg = Segmentation.from_parsing(labels)
    assert seg.area()[seg.index("skin")] == pytest.approx(400 / 4096)
    grown = seg.dilated("skin", 2)
    assert grown.masks[grown.index("skin")].sum() == 24 * 24
    shrunk = seg.dilated("skin", -2)
    assert shrunk.masks[shrunk.index("skin")].sum() == 16 * 16
    image = np.full((64, 64, 3), 100, np.uint8)
    overlay = seg.overlay(image)
    assert overlay.shape == image.shape and not np.array_equal(overlay[30, 30], overlay[5, 5])


def test_label_png_round_trip(tmp_path):
    seg = Segmentation.from_parsing(every_label_map(), min_fraction=0)
    seg.to_label_png(tmp_path / "labels.png")
    back = Segmentation.read(tmp_path / "labels.png")
    assert torch.equal(back.masks, seg.masks)


def test_bad_label_files(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "rgb.png")
    with pytest.raises(InvalidInputError, match="single-channel PNG"):
        Segmentation.read(tmp_path / "rgb.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no PNG"):
        Segmentation.read(tmp_path / "empty")
    with pytest.raises(InvalidInputError, match="does not exist"):
        Segmentation.read(tmp_path / "missing.png")


def test_split_by_label_undoes_a_group():
    labels = every_label_map()
    seg = Segmentation.from_parsing(labels, min_fraction=0)
    split = seg.split("mouth")
    assert "mouth" not in split.names
    assert {"mouth:mouth", "mouth:u_lip", "mouth:l_lip"} <= set(split.names)
    assert torch.equal(split.masks[split.index("mouth:u_lip"), 0], torch.from_numpy(labels == 12).float())
    assert torch.equal(split.masks.sum(0), seg.masks.sum(0))
    merged_back = split.merge(["mouth:mouth", "mouth:u_lip", "mouth:l_lip"], "mouth")
    assert torch.equal(merged_back.masks[merged_back.index("mouth"), 0], seg.masks[seg.index("mouth"), 0])
    with pytest.raises(InvalidInputError, match="single parser label"):
        seg.split("skin")
    with pytest.raises(InvalidInputError, match="from face parsing"):
        Segmentation(seg.names, seg.masks).split("mouth")


def test_boundaries_are_drawn_where_segments_meet_in_their_colours():
    from chunky.segmentation import segment_colour

    labels = np.zeros((8, 8), np.int64)
    labels[:, 5:] = 1  # "a" on columns 0-4, "b" on 5-7: they meet between columns 4 and 5
    segmentation = Segmentation.from_label_map(labels, {0: "a", 1: "b"})
    image = np.full((8, 8, 3), 7, np.uint8)
    drawn = segmentation.boundaries(image)
    changed = (drawn != image).any(axis=2)
    assert changed[:, 5].all() and changed.sum() == 8  # one line, on the pixels where a new segment starts
    assert (drawn[:, 5] == segment_colour("b")).all()
    larger = segmentation.boundaries(np.zeros((16, 16, 3), np.uint8)).any(axis=2)  # drawn at the image's size
    assert larger[:, 10].all() and larger.sum() == 16
