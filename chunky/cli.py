"""Command line: `chunky invert PHOTO --out DIR`, `chunky open work.pt --out DIR`, `chunky evaluate --images DIR
--out DIR`, `chunky doctor`, `chunky bench` (the same as `python -m chunky ...`).

The CLI parses arguments, drives a `chunky.session.Session` (the same owner of a user's work as the app) and
writes the same export; it holds no algorithm.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch
from PIL import Image

from chunky.config import PERCEPTUAL, PRESET_NAMES, SPACES
from chunky.device import PRECISIONS
from chunky.editor import DETECTORS, load_editor
from chunky.errors import ChunkyError, InvalidInputError
from chunky.evaluate import METHODS, evaluate
from chunky.export import export_session
from chunky.images import read_image, tensor_to_uint8
from chunky.inputs import Points
from chunky.metrics import l2_distance, lpips_distance
from chunky.preservation import Preservation
from chunky.segmentation import Segmentation
from chunky.session import Session
from chunky.workfile import read_work

log = logging.getLogger("chunky.cli")


def build_parser(prog: str = "chunky") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="ChunkyGAN: real image inversion via segments.")
    commands = parser.add_subparsers(dest="command", required=True)

    add_invert_command(commands)
    add_evaluate_command(commands)
    add_doctor_command(commands)
    add_open_command(commands)
    add_batch_command(commands)
    bench = commands.add_parser("bench", help="speed benchmarks (see chunky.bench)")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def add_invert_command(commands) -> None:
    """`chunky invert PHOTO --out DIR [options]`."""
    inv = commands.add_parser(
        "invert",
        help="project a photo, one latent code per segment",
        description="Project a face photo into StyleGAN2, one code per segment.",
    )
    inv.add_argument("photo", type=Path, help="a face photo (PNG, JPEG, WebP, ...); it is aligned to the FFHQ crop")
    inv.add_argument("--aligned", action="store_true", help="the photo is an FFHQ-aligned square crop already")
    inv.add_argument("--face", type=int, default=0, help="which face when there are several (0 = the largest)")
    inv.add_argument(
        "--landmarks",
        help="align to five points instead of detecting: x,y of the eye centres (left, then right in the "
        "picture), the nose tip and the mouth corners (left, then right): ten numbers, comma-separated",
    )
    inv.add_argument(
        "--masks",
        type=Path,
        help="label PNG (one label index per pixel, at the crop's size) or a folder "
        "of per-segment mask images; default: automatic face parsing",
    )
    inv.add_argument(
        "--global",
        dest="global_code",
        action="store_true",
        help="one code for the whole image (the baseline), no segments",
    )
    inv.add_argument("--keep", default="", help="comma-separated segment names taken straight from the photo")
    inv.add_argument("--out", type=Path, required=True, help="output folder (created)")
    inv.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help="a tuned recipe (chunky.config.preset); the options "
        "below override its fields (default: InversionConfig's defaults)",
    )
    inv.add_argument("--space", choices=SPACES)
    inv.add_argument("--steps", type=int)
    inv.add_argument("--lr", type=float)
    inv.add_argument(
        "--reg-weight",
        type=float,
        help="pull toward the mean code, normalised as in the authors' tool (10 there; 0 = off)",
    )
    inv.add_argument("--perceptual", choices=PERCEPTUAL)
    inv.add_argument("--pixel-weight", type=float)
    inv.add_argument(
        "--dilate",
        type=int,
        help="loss-region growth past each mask, pixels (renders blend only where both were fitted)",
    )
    inv.add_argument("--resolution", type=int, help="optimisation resolution")
    inv.add_argument(
        "--coarse-to-fine", action="store_true", default=None, help="first half of the steps at half resolution"
    )
    inv.add_argument("--precision", choices=PRECISIONS)
    inv.add_argument("--patience", type=int, help="stop after N steps without improvement")
    inv.add_argument("--size", type=int, help="output resolution (default: the generator's)")
    inv.add_argument(
        "--model",
        default="ffhq",
        help="'ffhq' (downloaded from the Hub), 'small' (the bundled small face "
        "model, offline), 'tiny' (random test model) or a path to a "
        "StyleGAN2 .pt checkpoint",
    )
    inv.add_argument("--cache", type=Path, help="inversion cache folder (the same request is answered at once)")
    inv.add_argument(
        "--detector",
        choices=DETECTORS,
        default="auto",
        help="'auto': RetinaFace (dlib's when its "
        "weights cannot be had); 'dlib': dlib's "
        "68 landmarks, as FFHQ's own recipe",
    )
    add_edit_arguments(inv)
    inv.add_argument("--quiet", action="store_true", help="no progress output")


def add_evaluate_command(commands) -> None:
    """`chunky evaluate --images ... --out DIR`."""
    ev = commands.add_parser(
        "evaluate",
        help="the paper's inversion table on a folder of photos",
        description="Run several inversion methods on every photo with the same budget; write "
        "table.md/.csv, results.json and grid.png (mean ± std of LPIPS, L2, identity, seconds).",
    )
    ev.add_argument("--images", type=Path, nargs="+", required=True, help="folders of face photos, or photos")
    ev.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}")
    ev.add_argument("--steps", type=int, default=200)
    ev.add_argument(
        "--preset", choices=PRESET_NAMES, help="run every method with this recipe instead of --steps plain steps"
    )
    ev.add_argument("--limit", type=int, help="only the first N photos (sorted by name)")
    ev.add_argument("--out", type=Path, required=True)
    ev.add_argument("--model", default="ffhq", help="'ffhq', 'small' (bundled, offline), 'tiny' or a checkpoint path")
    ev.add_argument(
        "--perceptual", choices=PERCEPTUAL, help="the inversion's perceptual term (default: the model's own)"
    )
    ev.add_argument(
        "--keep",
        default="background",
        help="comma-separated segments the per-segment methods take "
        "straight from the photo ('' = project every segment)",
    )


def add_doctor_command(commands) -> None:
    """`chunky doctor`."""
    doc = commands.add_parser(
        "doctor",
        help="check every stage on the real weights (fetches every registry file)",
        description="Fetch every registry file (printing its sha256), render random faces and "
        "check detection, alignment, parsing, inversion, directions and identity.",
    )
    doc.add_argument(
        "--model",
        default="ffhq",
        help="'ffhq', 'small' (the bundled small face model, offline), 'tiny' "
        "(offline; weight-dependent checks are n/a) or a checkpoint path",
    )
    doc.add_argument("--faces", type=int, default=3, help="random faces to render (at least 2)")
    doc.add_argument("--steps", type=int, default=100, help="inversion steps per method")
    doc.add_argument("--size", type=int, default=256, help="inversion and edit resolution")
    doc.add_argument("--no-fetch", action="store_true", help="skip fetching and hashing the registry files")


def add_open_command(commands) -> None:
    """`chunky open WORK --out DIR`."""
    op = commands.add_parser(
        "open",
        help="re-open a work file (work.pt) and export it again",
        description="Read a work.pt written by `invert` or the app's Export and write the export "
        "files again: pasted_back.png, aligned_crop.png, edited.png, comparison.png, work.pt.",
    )
    op.add_argument("work", type=Path, help="a work.pt file")
    op.add_argument("--out", type=Path, required=True, help="output folder (created)")
    op.add_argument("--tile", type=int, default=256, help="comparison grid cell size in pixels")
    op.add_argument(
        "--model", default="ffhq", help="the model the work was made with: 'ffhq', 'small', 'tiny' or a checkpoint path"
    )


def add_batch_command(commands) -> None:
    """`chunky batch PHOTOS --edit ... --out DIR`."""
    batch = commands.add_parser(
        "batch",
        help="one edit over a folder of photos: exports, a summary grid and a figures table",
        description="Invert every photo of a folder (cached), apply the same edit, export each, and write "
        "summary.png (photo | reconstruction | edit, captioned with how much changed outside and inside the "
        "edited segments) and summary.md/.json. A second run skips finished photos; a failed photo is listed.",
    )
    batch.add_argument("photos", type=Path, help="a folder of face photos")
    batch.add_argument("--out", type=Path, required=True, help="output folder (created)")
    batch.add_argument("--preset", choices=PRESET_NAMES, default="preview")
    batch.add_argument(
        "--model", default="ffhq", help="'ffhq', 'small' (bundled, offline), 'tiny' or a checkpoint path"
    )
    batch.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "chunky" / "inversions",
        help="inversion cache folder (default: ~/.cache/chunky/inversions)",
    )
    add_edit_arguments(batch)


def main(argv: list[str] | None = None, *, prog: str = "chunky") -> int:
    """The ``chunky`` command (installed by ``pip install -e .``) and ``python -m chunky``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser(prog).parse_args(argv)
    if args.command == "bench":
        from chunky import bench

        bench.main(args.args)
        return 0
    try:
        runs = {
            "invert": run_invert,
            "open": run_open,
            "evaluate": run_evaluate,
            "doctor": run_doctor,
            "batch": run_batch,
        }
        return runs[args.command](args)
    except ChunkyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_invert(args: argparse.Namespace) -> int:
    given = {
        "space": args.space,
        "steps": args.steps,
        "lr": args.lr,
        "reg_weight": args.reg_weight,
        "perceptual": args.perceptual,
        "pixel_weight": args.pixel_weight,
        "dilate_px": args.dilate,
        "resolution": args.resolution,
        "coarse_to_fine": args.coarse_to_fine,
        "precision": args.precision,
        "patience": args.patience,
    }
    photo = read_image(args.photo, name=f"photo {args.photo.name}")
    editor = load_editor(args.model, cache_dir=args.cache, detector=args.detector)
    base = editor.preset(args.preset) if args.preset else editor.default_config()
    config = base.replace(**{name: value for name, value in given.items() if value is not None})
    size = args.size or editor.generator.size
    segmentation = None
    if args.global_code:  # one segment covering the whole image: the global baseline
        segmentation = Segmentation(("global",), torch.ones(1, 1, size, size))
    elif args.masks:
        segmentation = Segmentation.read(args.masks)
    session = Session.start(
        editor,
        photo,
        face_index=args.face,
        skip_alignment=True if args.aligned else None,
        segmentation=segmentation,
        size=size,
        landmarks=None if args.landmarks is None else Points("--landmarks").check(args.landmarks),
    )
    if session.aligned.face_count > 1:
        log.warning("%d faces found; using face %d (choose with --face)", session.aligned.face_count, args.face)
    session.invert(
        config,
        keep=[name for name in args.keep.split(",") if name],
        baselines=args.compare_global,
        progress=None if args.quiet else _print_progress,
    )
    if not args.quiet:
        print(file=sys.stderr)
    strengths = parse_edits(args.edit)
    if strengths:
        session.set_edit(strengths, [name for name in args.segments.split(",") if name])
    perceptual = editor.perceptual(config.perceptual)
    done = export_session(session, args.out, perceptual=perceptual, identity=editor.identity() if strengths else None)
    metrics = write_outputs(args.out, session, perceptual, done.preservation)
    print(
        f"wrote {args.out}: composite LPIPS {metrics['composite']['lpips']}, L2 {metrics['composite']['l2']:.4f}, "
        f"{metrics['seconds']:.1f} s"
    )
    if done.preservation is not None:
        print(f"edit ({', '.join(session.state.targets) or 'every projected segment'}): {done.preservation.line()}")
    if metrics.get("global_w_plus_preservation"):
        one_code = Preservation.from_dict(metrics["global_w_plus_preservation"])
        print(f"the same edit on one global W+ code: {one_code.line()}")
    return 0


def add_edit_arguments(parser: argparse.ArgumentParser) -> None:
    """--edit NAME=VALUE (repeatable), --segments and --compare-global, shared by invert and batch."""
    parser.add_argument(
        "--edit",
        action="append",
        default=[],
        metavar="DIRECTION=VALUE",
        help="move the codes along a direction (a name from the model's list; repeatable), e.g. --edit smile=1.5",
    )
    parser.add_argument(
        "--segments", default="", help="comma-separated segments the edit applies to (default: every projected one)"
    )
    parser.add_argument(
        "--compare-global",
        action="store_true",
        help="also invert one global W and W+ code, and apply the same edit to the W+ one (figures side by side)",
    )


def parse_edits(items: list[str]) -> dict[str, float]:
    """{direction: strength} from 'NAME=VALUE' items; a malformed item is a clear error."""
    strengths = {}
    for item in items:
        name, _, value = item.rpartition("=")
        try:
            strength = float(value)
        except ValueError:
            strength = math.nan
        if not name.strip() or not math.isfinite(strength):
            raise InvalidInputError(f"--edit takes DIRECTION=VALUE, e.g. 'Component 1=2.5'; got {item!r}.")
        strengths[name.strip()] = strength
    return strengths


def run_open(args: argparse.Namespace) -> int:
    """Re-open a work file and export it again (the same files the app's Export writes)."""
    session = read_work(load_editor(args.model), args.work)
    done = export_session(session, args.out, tile=args.tile)
    edit = ", ".join(f"{k} {v:+.2f}" for k, v in session.strengths().items()) or "no edit"
    print(f"wrote {args.out}: {len(done.files)} files; segments {', '.join(session.names)}; {edit}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    editor = load_editor(args.model)
    methods = [m for m in args.methods.split(",") if m]

    def report(done: int, total: int, name: str) -> None:
        print(f"\r[{done}/{total}] {name:<40}", end="", file=sys.stderr, flush=True)

    summary = evaluate(
        editor,
        args.images,
        args.out,
        methods=methods,
        steps=args.steps,
        limit=args.limit,
        preset_name=args.preset,
        perceptual_loss=args.perceptual,
        progress=report,
        keep=[name for name in args.keep.split(",") if name],
    )
    print(file=sys.stderr)
    print((args.out / "table.md").read_text())
    for name, message in summary["errors"].items():
        print(f"skipped {name}: {message}", file=sys.stderr)
    return 0


def run_batch(args: argparse.Namespace) -> int:
    """`chunky batch`: the same edit over a folder of photos (`chunky.batch`)."""
    from chunky import batch

    editor = load_editor(args.model, cache_dir=args.cache)
    photos = batch.photos_in(args.photos)

    def report(done: int, total: int, name: str) -> None:
        bar = "#" * (20 * done // max(total, 1))
        print(f"\r[{bar:<20}] {done}/{total} {name:<40}", end="", file=sys.stderr, flush=True)

    summary = batch.run_batch(
        editor,
        photos,
        args.out,
        config=editor.preset(args.preset),
        strengths=parse_edits(args.edit),
        segments=[name for name in args.segments.split(",") if name],
        compare_global=args.compare_global,
        progress=report,
    )
    print(file=sys.stderr)
    print((args.out / "summary.md").read_text())
    finished = len(summary["photos"]) - len(summary["skipped"])
    print(
        f"wrote {args.out}: {finished} photos edited, {len(summary['skipped'])} already done, "
        f"{len(summary['errors'])} failed"
    )
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    """Print the doctor's PASS/FAIL table; exit code 1 when a check failed."""
    from chunky import doctor

    editor = load_editor(args.model)
    size = min(args.size, editor.generator.size)
    checks = doctor.run(
        editor,
        real=args.model != "tiny",
        faces=args.faces,
        steps=args.steps,
        size=size,
        fetch_weights=not args.no_fetch,
        progress=lambda stage: print(f"checking {stage} ...", file=sys.stderr),
    )
    print(doctor.format_table(checks))
    return 1 if any(c.status == doctor.FAIL for c in checks) else 0


def _print_progress(step: int, total: int, info: dict) -> None:
    print(
        f"\rstep {step}/{total}  loss {info['loss']:.4f}  {info['seconds']:.0f} s, ~{info['eta']:.0f} s left",
        end="",
        file=sys.stderr,
        flush=True,
    )


def write_outputs(out: Path, session: Session, perceptual, preservation: Preservation | None = None) -> dict:
    """Beside the export: masks.png (segment indices), renders/<k>_<name>.png and metrics.json.

    Returns the metrics written: per segment {lpips, l2, total} (at the optimisation resolution, inside the
    segment's loss region), the composite's LPIPS/L2 against the photo (at 256 px; LPIPS is None when the
    perceptual loss is "none"), the loss, seconds and steps; with an edit, its ``preservation`` figures (from
    the export) and, when the global W+ code was inverted, the same edit's figures on it.
    """
    result, names = session.require_result(), session.names
    (out / "renders").mkdir(parents=True, exist_ok=True)
    session.state.segmentation.to_label_png(out / "masks.png")
    for k, name in enumerate(names):
        Image.fromarray(tensor_to_uint8(result.renders[k])).save(out / "renders" / f"{k:02d}_{name}.png")
    losses = {key: value.tolist() for key, value in result.segment_losses.items()}
    metrics = {
        "segments": {
            name: {key: losses[key][k] for key in losses} | {"kept": k in result.keep} for k, name in enumerate(names)
        },
        "composite": {
            "l2": float(l2_distance(result.composite, result.target)[0]),
            "lpips": None
            if perceptual is None
            else float(lpips_distance(result.composite, result.target, perceptual)[0]),
        },
        "loss": result.loss,
        "seconds": result.seconds,
        "steps_run": result.steps_run,
        "config": json.loads(result.config.to_json()),
        "edit": {"strengths": session.strengths(), "segments": list(session.state.targets)},
    }
    if preservation is not None:
        metrics["preservation"] = preservation.to_dict()
        if dict(session.state.baselines).get("global W+") is not None:
            _, figures = session.global_preservation(perceptual=perceptual, identity=session.editor.identity())
            metrics["global_w_plus_preservation"] = figures.to_dict()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    sys.exit(main())
