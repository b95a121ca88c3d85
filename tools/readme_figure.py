"""The README's picture: a real photo inverted offline by the bundled small face model.

Columns: the photo (aligned to the small model's crop), one code for the whole image (global W+), one code per
segment (chunky, W+; the same number of steps as `chunky evaluate` gives them, its first tenth on one code
that every segment starts from), and an edit of the mouth's code only. The photo is the astronaut (scikit-image, public
domain): the team's test photos in ../shared may not be copied into the repository, so none is used here.
Prints the L2 of each inversion.

Usage: python tools/readme_figure.py [--out docs/images/small-model-result.png] [--steps 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chunky.bench import astronaut_photo  # noqa: E402
from chunky.editor import ChunkyEditor  # noqa: E402
from chunky.evaluate import METHODS, method_config  # noqa: E402
from chunky.grid import comparison_grid  # noqa: E402
from chunky.images import read_image, tensor_to_uint8  # noqa: E402
from chunky.metrics import l2_distance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/small-model-result.png"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--direction", default=None, help="direction to apply to the mouth (default: the first)")
    parser.add_argument("--strength", type=float, default=2.5)
    parser.add_argument("--label", default=None, help="the edit column's title (default: the direction's name)")
    args = parser.parse_args()
    editor = ChunkyEditor.small()
    direction = args.direction or editor.directions()[0].name
    photos = [astronaut_photo()]
    rows = []
    for path in photos:
        aligned = editor.align(read_image(path), skip_alignment=False)
        segments = editor.segment(aligned.crop)
        perceptual = editor.default_perceptual
        single_config = method_config(editor, METHODS["w+"], args.steps, perceptual)
        single = editor.invert(aligned.crop, None, config=single_config)
        chunky_config = method_config(editor, METHODS["chunky-w+"], args.steps, perceptual)  # same steps
        chunky = editor.invert(aligned.crop, segments, config=chunky_config)
        edit = editor.edit(chunky, {direction: args.strength}, ["mouth"], names=segments.names)
        print(
            f"{path.name}: L2 global W+ {float(l2_distance(single.composite, single.target)):.4f}, "
            f"per segment {float(l2_distance(chunky.composite, chunky.target)):.4f}"
        )
        rows.append(
            [
                aligned.crop,
                tensor_to_uint8(single.composite),
                tensor_to_uint8(chunky.composite),
                tensor_to_uint8(edit.composite),
            ]
        )
    labels = ["photo", "global W+", "per segment", args.label or f"{direction}, mouth only"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(comparison_grid(rows, labels, cell=160)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    np.set_printoptions(precision=4)
    main()
