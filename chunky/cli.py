"""Command line: `python -m chunky invert PHOTO --out DIR`, `python -m chunky evaluate --images DIR --out DIR`,
`python -m chunky bench`.

The CLI parses arguments, calls the `ChunkyEditor` facade and writes files; it holds no algorithm.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from PIL import Image

from chunky.align import paste_back
from chunky.cache import InversionCache
from chunky.config import PERCEPTUAL, PRESET_NAMES, SPACES, InversionConfig, preset
from chunky.device import PRECISIONS
from chunky.editor import ChunkyEditor
from chunky.errors import ChunkyError
from chunky.evaluate import METHODS, evaluate
from chunky.generator import Generator
from chunky.images import read_image, tensor_to_uint8
from chunky.inversion import InversionResult
from chunky.metrics import l2_distance, lpips_distance
from chunky.segmentation import Segmentation

log = logging.getLogger("chunky.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chunky", description="ChunkyGAN: real image inversion via segments.")
    commands = parser.add_subparsers(dest="command", required=True)

    inv = commands.add_parser("invert", help="project a photo, one latent code per segment",
                              description="Project a face photo into StyleGAN2, one code per segment.")
    inv.add_argument("photo", type=Path, help="a face photo (PNG, JPEG, WebP, ...); it is aligned to the FFHQ crop")
    inv.add_argument("--aligned", action="store_true", help="the photo is an FFHQ-aligned square crop already")
    inv.add_argument("--face", type=int, default=0, help="which face when there are several (0 = the largest)")
    inv.add_argument("--masks", type=Path, help="label PNG (one label index per pixel, at the crop's size) or a folder "
                                                "of per-segment mask images; default: automatic face parsing")
    inv.add_argument("--global", dest="global_code", action="store_true", help="one code for the whole image "
                                                                              "(the baseline), no segments")
    inv.add_argument("--keep", default="", help="comma-separated segment names taken straight from the photo")
    inv.add_argument("--out", type=Path, required=True, help="output folder (created)")
    inv.add_argument("--preset", choices=PRESET_NAMES, help="a tuned recipe (chunky.config.preset); the options "
                                                            "below override its fields (default: InversionConfig's defaults)")
    inv.add_argument("--space", choices=SPACES)
    inv.add_argument("--steps", type=int)
    inv.add_argument("--lr", type=float)
    inv.add_argument("--reg-weight", type=float, help="lambda of the pull toward mean w")
    inv.add_argument("--perceptual", choices=PERCEPTUAL)
    inv.add_argument("--pixel-weight", type=float)
    inv.add_argument("--dilate", type=int, help="loss-region growth past each mask, pixels")
    inv.add_argument("--resolution", type=int, help="optimisation resolution")
    inv.add_argument("--coarse-to-fine", action="store_true", default=None, help="first half of the steps at half resolution")
    inv.add_argument("--precision", choices=PRECISIONS)
    inv.add_argument("--patience", type=int, help="stop after N steps without improvement")
    inv.add_argument("--size", type=int, help="output resolution (default: the generator's)")
    inv.add_argument("--model", default="ffhq", help="'ffhq' (downloaded from the Hub), 'tiny' (random test model) "
                                                     "or a path to a StyleGAN2 .pt checkpoint")
    inv.add_argument("--cache", type=Path, help="inversion cache folder (the same request is answered at once)")
    inv.add_argument("--quiet", action="store_true", help="no progress output")

    ev = commands.add_parser("evaluate", help="the paper's inversion table on a folder of photos",
                             description="Run several inversion methods on every photo with the same budget; write "
                                         "table.md/.csv, results.json and grid.png (mean ± std of LPIPS, L2, identity, seconds).")
    ev.add_argument("--images", type=Path, required=True, help="folder of face photos")
    ev.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}")
    ev.add_argument("--steps", type=int, default=200)
    ev.add_argument("--preset", choices=PRESET_NAMES, help="run every method with this recipe instead of --steps plain steps")
    ev.add_argument("--limit", type=int, help="only the first N photos (sorted by name)")
    ev.add_argument("--out", type=Path, required=True)
    ev.add_argument("--model", default="ffhq", help="'ffhq', 'tiny' or a checkpoint path")

    bench = commands.add_parser("bench", help="speed benchmarks (see chunky.bench)")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from chunky import bench

        bench.main(args.args)
        return 0
    try:
        return run_evaluate(args) if args.command == "evaluate" else run_invert(args)
    except ChunkyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_invert(args: argparse.Namespace) -> int:
    given = {"space": args.space, "steps": args.steps, "lr": args.lr, "reg_weight": args.reg_weight,
             "perceptual": args.perceptual, "pixel_weight": args.pixel_weight, "dilate_px": args.dilate,
             "resolution": args.resolution, "coarse_to_fine": args.coarse_to_fine, "precision": args.precision,
             "patience": args.patience}
    base = preset(args.preset) if args.preset else InversionConfig()
    config = base.replace(**{name: value for name, value in given.items() if value is not None})
    photo = read_image(args.photo, name=f"photo {args.photo.name}")
    editor = _load_editor(args.model, args.cache)
    aligned = editor.align(photo, face_index=args.face, skip_alignment=True if args.aligned else None)
    if aligned.face_count > 1:
        log.warning("%d faces found; using face %d (choose with --face)", aligned.face_count, aligned.face_index)
    if args.global_code:
        segmentation = None
    elif args.masks:
        segmentation = Segmentation.read(args.masks)
    else:
        segmentation = editor.segment(aligned.crop)
    keep = [name for name in args.keep.split(",") if name]
    result = editor.invert(aligned.crop, segmentation, config=config, keep=keep, size=args.size,
                           progress=None if args.quiet else _print_progress)
    if not args.quiet:
        print(file=sys.stderr)
    names = segmentation.names if segmentation else ("global",)
    metrics = write_outputs(args.out, result, names, editor.perceptual(config.perceptual))
    pasted = paste_back(tensor_to_uint8(result.composite), aligned)
    Image.fromarray(pasted).save(args.out / "pasted.png")
    print(f"wrote {args.out}: composite LPIPS {metrics['composite']['lpips']}, L2 {metrics['composite']['l2']:.4f}, "
          f"{metrics['seconds']:.1f} s")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    editor = _load_editor(args.model, None)
    methods = [m for m in args.methods.split(",") if m]

    def report(done: int, total: int, name: str) -> None:
        print(f"\r[{done}/{total}] {name:<40}", end="", file=sys.stderr, flush=True)

    summary = evaluate(editor, args.images, args.out, methods=methods, steps=args.steps, limit=args.limit,
                       preset_name=args.preset, progress=report)
    print(file=sys.stderr)
    print((args.out / "table.md").read_text())
    for name, message in summary["errors"].items():
        print(f"skipped {name}: {message}", file=sys.stderr)
    return 0


def _load_editor(model: str, cache_dir: Path | None) -> ChunkyEditor:
    cache = InversionCache(cache_dir) if cache_dir else None
    if model == "tiny":
        editor = ChunkyEditor.tiny()
    elif model == "ffhq":
        editor = ChunkyEditor.from_pretrained()
    else:
        editor = ChunkyEditor(Generator.from_checkpoint(model), label=str(model))
    editor.cache = cache
    return editor


def _print_progress(step: int, total: int, info: dict) -> None:
    print(f"\rstep {step}/{total}  loss {info['loss']:.4f}  {info['seconds']:.0f} s, ~{info['eta']:.0f} s left",
          end="", file=sys.stderr, flush=True)


def write_outputs(out: Path, result: InversionResult, names: tuple[str, ...], perceptual) -> dict:
    """Write composite.png, photo.png (the aligned crop), masks.png, renders/<k>_<name>.png, codes.pt and metrics.json to ``out``.

    Returns the metrics written: per segment {lpips, l2, total} (at the optimisation resolution, inside the
    segment's dilated region), the composite's LPIPS/L2 against the photo (at 256 px; LPIPS is None when
    the perceptual loss is "none"), the loss, seconds and steps.
    """
    (out / "renders").mkdir(parents=True, exist_ok=True)
    Image.fromarray(tensor_to_uint8(result.composite)).save(out / "composite.png")
    Image.fromarray(tensor_to_uint8(result.target)).save(out / "photo.png")
    Segmentation(names, result.masks).to_label_png(out / "masks.png")
    for k, name in enumerate(names):
        Image.fromarray(tensor_to_uint8(result.renders[k])).save(out / "renders" / f"{k:02d}_{name}.png")
    torch.save({"codes": result.codes, "projected": result.projected, "keep": result.keep, "names": list(names),
                "config": json.loads(result.config.to_json())}, out / "codes.pt")
    losses = {key: value.tolist() for key, value in result.segment_losses.items()}
    metrics = {
        "segments": {name: {key: losses[key][k] for key in losses} | {"kept": k in result.keep}
                     for k, name in enumerate(names)},
        "composite": {"l2": float(l2_distance(result.composite, result.target)[0]),
                      "lpips": None if perceptual is None else float(lpips_distance(result.composite, result.target, perceptual)[0])},
        "loss": result.loss, "seconds": result.seconds, "steps_run": result.steps_run,
        "config": json.loads(result.config.to_json()),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    sys.exit(main())
