"""Slide-ready grids: column titles with their metrics wrap inside their own cell at every tile size, so they
never run into each other (they used to: "...LPIPS 0.126)global W+")."""

import numpy as np
import pytest

from chunky.grid import comparison_grid

LABELS = [
    "photo",
    "global W (L2 0.0412, LPIPS 0.318)",
    "global W+ (L2 0.0215, LPIPS 0.126)",
    "chunky (L2 0.0102, LPIPS 0.081)",
    "edited (L2 0.0133, LPIPS 0.097; outside its segments 0.0% changed)",
    "same edit, one W+ code (L2 0.0301; outside the segments 97.5% changed)",
]


@pytest.mark.parametrize("cell", [64, 256, 512, 1024])
def test_titles_stay_inside_their_columns_at_every_tile_size(cell):
    gap = 8
    images = [np.full((16, 16, 3), 128, np.uint8)] * len(LABELS)
    grid = comparison_grid([images], LABELS, cell=cell, gap=gap)
    header = grid.shape[0] - cell - 2 * gap  # one row: header + cell + gap below
    assert np.array_equal(grid[header : header + cell, gap : gap + cell], np.full((cell, cell, 3), 128, np.uint8))
    ink = (grid[:header] < 128).any(axis=2)  # dark pixels of the titles
    for c in range(len(LABELS)):
        start = gap + c * (cell + gap)
        assert not ink[:, start - gap : start].any(), f"a title crosses the gap before column {c} at {cell} px"
        assert ink[:, start : start + cell].any(), f"column {c} has no title at {cell} px"
    assert not ink[:, -gap:].any()


def test_a_word_wider_than_the_cell_is_cut_to_fit():
    grid = comparison_grid([[np.zeros((8, 8, 3), np.uint8)] * 2], ["W" * 80, "x"], cell=64, gap=8)
    ink = (grid[: grid.shape[0] - 64 - 16] < 128).any(axis=2)
    assert not ink[:, 72:80].any()  # nothing in the gap between the two columns


def test_a_slide_is_16_by_9_with_the_grid_centred_and_unscaled():
    from chunky.grid import as_slide

    rng = np.random.default_rng(0)
    for shape in [(304, 1328, 3), (900, 400, 3), (90, 160, 3)]:
        grid = rng.integers(0, 255, shape, dtype=np.uint8)
        slide = as_slide(grid)
        height, width = slide.shape[:2]
        assert abs(width / height - 16 / 9) < 0.01 and height >= shape[0] and width >= shape[1]
        top, left = (height - shape[0]) // 2, (width - shape[1]) // 2
        assert np.array_equal(slide[top : top + shape[0], left : left + shape[1]], grid)
        outside = np.ones((height, width), bool)
        outside[top : top + shape[0], left : left + shape[1]] = False
        assert (slide[outside] == 255).all()
