"""chunky in the browser: `python app.py` (CHUNKY_MODEL=tiny for the test mode: no downloads).

This file lays out widgets and wires them to the `ChunkyEditor` facade; every algorithm lives in
`chunky/`. Per-user state is a `chunky.session.Session` in `gr.State`; files are written to fresh
temporary folders, never to fixed paths.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from chunky.align import paste_back
from chunky.cache import InversionCache
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.errors import ChunkyError, InvalidInputError
from chunky.grid import comparison_grid
from chunky.images import read_image, tensor_to_uint8
from chunky.segmentation import Segmentation, segment_colour
from chunky.session import Session

log = logging.getLogger("chunky.app")

try:  # Hugging Face ZeroGPU Spaces: borrow a GPU for the long calls; elsewhere a no-op
    import spaces

    on_gpu = spaces.GPU(duration=300)
except ImportError:
    def on_gpu(fn):
        return fn

PRESETS = {  # name -> (steps, optimisation resolution, coarse-to-fine)
    "Preview": (40, 128, False),
    "Balanced": (150, 256, False),
    "Best": (400, 256, True),
}
SPACES = {"W": "w", "W+": "w+", "S": "s"}
MAX_SLIDERS = 64  # direction sliders shown (user folders can hold many files)
IMAGE_HEIGHT = 320
MAX_SECONDS = float(os.environ.get("CHUNKY_MAX_SECONDS", "900"))  # one inversion's time limit in the app
EXPORT_ROOT = Path(tempfile.gettempdir()) / "chunky-exports"
EXPORT_MAX_AGE_S = 3600  # export folders older than this are deleted at the next export
KEEP_BY_DEFAULT = ("background",)


def friendly(fn):
    """Show library errors as readable messages; log anything unexpected and show a short message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ChunkyError as error:
            raise gr.Error(str(error)) from None
        except torch.OutOfMemoryError:
            raise gr.Error("Out of memory: choose the Preview preset or fewer segments.") from None
        except Exception as error:  # the UI must never show a traceback; the log keeps it
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}). Please try again.") from None

    return wrapper


def loaded(s: Session | None) -> Session:
    """The session, or a clear error when no photo has been loaded yet."""
    if s is None:
        raise InvalidInputError("Load a photo first.")
    return s


def inverted(s: Session | None) -> Session:
    """The session, or a clear error when there is no inversion yet."""
    if s is None:
        raise InvalidInputError("Run the inversion first.")
    s.require_result()
    return s


def progress_reporter(s: Session, progress: gr.Progress, label: str):
    """An inversion progress callback: updates the bar; stops on cancel or at the MAX_SECONDS limit."""
    def callback(step, total, info):
        progress((step, total), desc=f"{label}: loss {info['loss']:.3f}, about {info['eta']:.0f} s left")
        return not s.cancel.is_set() and info["seconds"] < MAX_SECONDS
    return callback


def work_size(editor: ChunkyEditor) -> int:
    """Resolution of renders in the app: full size on a GPU; at most 512 px on a CPU so edits stay quick
    (the paste-back still lands in the photo at its full resolution)."""
    size = editor.generator.size
    return size if editor.device.type == "cuda" else min(size, 512)


def build_demo(editor: ChunkyEditor | None, *, startup_error: str = "") -> gr.Blocks:
    """Lay out the page and wire it to ``editor``. With no editor, the page explains ``startup_error``."""
    # delete_cache: Gradio's copies of served files older than a day go away, checked every hour
    with gr.Blocks(title="chunky: ChunkyGAN in the browser", delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# chunky\nReal image inversion via segments ([ChunkyGAN](https://arxiv.org/abs/2208.11727), "
                    "ECCV 2022): every face segment gets its own StyleGAN2 code.")
        if editor is None:
            gr.Markdown(f"**The model could not be loaded.** {startup_error}")
            return demo
        if editor.label:
            gr.Markdown(f"Model: **{editor.label}** · device: {editor.device.type}")
        _build_page(editor)
    return demo


def _build_page(editor: ChunkyEditor) -> None:
    directions = editor.directions()[:MAX_SLIDERS]
    groups = list(dict.fromkeys(d.group for d in directions))
    directions = sorted(directions, key=lambda d: groups.index(d.group))  # slider order = direction order
    on_cpu = editor.device.type != "cuda"
    session = gr.State(None)

    # 1. Input ----------------------------------------------------------------------------------
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Photo (PNG, JPEG, WebP, ...)", file_types=["image"], type="filepath",
                             elem_id="upload")
            with gr.Row():
                face_index = gr.Number(value=0, precision=0, minimum=0, label="Face (0 = largest)")
                already_aligned = gr.Checkbox(value=False, label="Already an aligned face crop")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="Seed")
                random_button = gr.Button("Random face")
            load_button = gr.Button("Load photo", variant="primary", elem_id="load")
            with gr.Accordion("…or take a photo with the webcam", open=False):
                webcam = gr.Image(sources=["webcam"], type="numpy", label="Webcam", format="png")
                webcam_button = gr.Button("Use this photo")
            status = gr.Markdown("Upload a photo or make a random face.", elem_id="status")
        crop_view = gr.Image(label="Aligned face", type="numpy", format="png", interactive=False, elem_id="crop",
                             height=IMAGE_HEIGHT)
        overlay_view = gr.Image(label="Segments", type="numpy", format="png", interactive=False, elem_id="overlay",
                                height=IMAGE_HEIGHT)

    # 2. Segments -------------------------------------------------------------------------------
    with gr.Accordion("Segments: choose what to re-project, sketch corrections", open=False):
        legend = gr.Markdown()
        reproject = gr.CheckboxGroup(label="Re-project (unchecked segments are taken straight from the photo)",
                                     elem_id="reproject")
        with gr.Row():
            sketch = gr.ImageEditor(label="Sketch on the crop", type="numpy", layers=False,
                                    brush=gr.Brush(colors=["#ff0000"], color_mode="fixed"), eraser=False)
            with gr.Column():
                sketch_segment = gr.Dropdown(label="Segment to correct")
                add_button = gr.Button("Add painted pixels to it")
                remove_button = gr.Button("Remove painted pixels from it")
                merge_choice = gr.CheckboxGroup(label="Segments to merge into one")
                merge_button = gr.Button("Merge")
                split_button = gr.Button("Split the segment above by parser label")
                reset_button = gr.Button("Reset to automatic")

    # 3. Inversion ------------------------------------------------------------------------------
    with gr.Row():
        space = gr.Radio(list(SPACES), value="W+", label="Latent space")
        preset = gr.Radio(list(PRESETS), value="Preview" if on_cpu else "Balanced", label="Quality")
        baselines = gr.Checkbox(value=False, label="Also run global W and W+ (for comparison)")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            steps = gr.Slider(0, 1000, value=0, step=10, label="Steps (0 = from the preset)", elem_id="steps")
            reg_weight = gr.Slider(0, 5, value=0, step=0.1, label="λ_reg (pull toward the mean face)")
            dilate_px = gr.Slider(0, 32, value=8, step=1, label="Segment overlap (px)")
            precision = gr.Radio(["fp32", "bf16"], value="bf16" if on_cpu else "fp32", label="Precision")
    with gr.Row():
        invert_button = gr.Button("Invert", variant="primary", elem_id="invert")
        cancel_button = gr.Button("Cancel", elem_id="cancel")

    # 4. Results --------------------------------------------------------------------------------
    with gr.Row():
        photo_view = gr.Image(label="Photo (aligned)", type="numpy", format="png", interactive=False, height=IMAGE_HEIGHT)
        result_view = gr.Image(label="Result", type="numpy", format="png", interactive=False, elem_id="result",
                               height=IMAGE_HEIGHT)
    with gr.Row():
        renders_view = gr.Gallery(label="Per-segment renders", columns=6, height=220)
        metrics_view = gr.Dataframe(headers=["segment", "kept", "LPIPS", "L2"], label="Reconstruction", interactive=False)

    # 5. Edit -----------------------------------------------------------------------------------
    with gr.Accordion("Edit", open=True):
        targets = gr.CheckboxGroup(label="Apply edits to (none checked = every projected segment)", elem_id="targets")
        sliders = []
        for group in groups:
            with gr.Accordion(f"Directions: {group}", open=group == groups[0]):
                sliders += [gr.Slider(*d.limits, value=0.0, step=0.1, label=d.name, elem_id=f"slider-{len(sliders) + i}")
                            for i, d in enumerate(d for d in directions if d.group == group)]
        with gr.Row():
            variation_segment = gr.Dropdown(label="Variations of", scale=1)
            variation_seed = gr.Number(value=0, precision=0, label="Seed", scale=1)
            variation_button = gr.Button("Show variations", scale=1)
        variations_view = gr.Gallery(label="Variations (click one to use it)", columns=4, height=200)
        with gr.Accordion("Take a segment from a reference photo", open=False):
            with gr.Row():
                reference_upload = gr.File(label="Reference photo", file_types=["image"], type="filepath")
                transfer_segment_choice = gr.Dropdown(["hair", "eyes", "brows", "nose", "mouth", "skin"], value="hair",
                                                      label="Segment to take")
                transfer_button = gr.Button("Transfer")
        with gr.Row():
            refine_button = gr.Button("Refine boundaries (level set)", elem_id="refine")
            freeze_button = gr.Button("Freeze (edit on top of this)", elem_id="freeze")
            undo_button = gr.Button("Undo", elem_id="undo")
        with gr.Accordion("Fine-tune the generator for some segments (pivotal tuning; slow on a CPU)", open=False):
            with gr.Row():
                tune_choice = gr.CheckboxGroup(label="Segments to fine-tune (each gets its own generator copy)",
                                               elem_id="tune-segments", scale=3)
                tune_steps = gr.Slider(10, 200, value=40, step=10, label="Steps per segment", scale=1)
                tune_button = gr.Button("Fine-tune", elem_id="tune", scale=1)
        with gr.Row():
            reproject_after = gr.CheckboxGroup(label="When freezing, re-project these segments against the frozen result "
                                               "(from their current codes)", elem_id="reproject-after", scale=3)
            reproject_steps = gr.Slider(10, 300, value=30, step=10, label="Re-projection steps", scale=1)

    # 6. Export ---------------------------------------------------------------------------------
    with gr.Row():
        export_button = gr.Button("Export", elem_id="export")
        files = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")

    # ------------------------------------------------------------------------------- handlers
    def segment_outputs(s: Session):
        names = list(s.segmentation.names)
        chosen = [n for n in names if n not in KEEP_BY_DEFAULT]
        legend_text = " · ".join(f"<span style='color:rgb{segment_colour(n)}'>■</span> {n} "
                                 f"({100 * float(a):.0f}%)" for n, a in zip(names, s.segmentation.area()))
        return (s.segmentation.overlay(s.aligned.crop), legend_text, gr.update(choices=names, value=chosen),
                gr.update(choices=names, value=names[0]), {"background": s.aligned.crop, "layers": [], "composite": s.aligned.crop},
                gr.update(choices=names, value=[]), gr.update(choices=names, value=[]),
                gr.update(choices=names, value=chosen[0] if chosen else names[0]), gr.update(choices=names, value=[]),
                gr.update(choices=names, value=[]))

    def start_session(photo: np.ndarray, index: int, aligned_flag: bool, source: str):
        aligned = editor.align(photo, face_index=int(index or 0), skip_alignment=True if aligned_flag else None)
        segmentation = editor.segment(aligned.crop)
        s = Session(aligned=aligned, automatic=segmentation, segmentation=segmentation)
        note = f"{source}: {aligned.face_count} face(s) found, using face {aligned.face_index}." if not aligned.skipped \
            else f"{source}: used as an aligned crop."
        return (s, aligned.crop, note, *segment_outputs(s), aligned.crop, None, [], None)

    @friendly
    def load_photo(path, index, aligned_flag):
        if not path:
            raise InvalidInputError("Choose a photo to upload first.")
        photo = read_image(Path(path), name=Path(path).name)
        return start_session(photo, index, aligned_flag, Path(path).name)

    @friendly
    def use_webcam(frame, index, aligned_flag):
        if frame is None:
            raise InvalidInputError("Take a photo with the webcam first.")
        return start_session(np.asarray(frame, np.uint8)[..., :3], index, aligned_flag, "Webcam photo")

    @friendly
    def random_face(seed_value):
        face = editor.random_face(int(seed_value or 0), resolution=work_size(editor))
        return start_session(face, 0, True, f"Random face #{int(seed_value or 0)}")

    segment_views = [overlay_view, legend, reproject, sketch_segment, sketch, targets, merge_choice, variation_segment,
                     reproject_after, tune_choice]
    load_outputs = [session, crop_view, status, *segment_views, photo_view, result_view, renders_view, metrics_view]
    load_button.click(load_photo, [upload, face_index, already_aligned], load_outputs, api_name="load")
    random_button.click(random_face, [seed], load_outputs, api_name="random_face")
    webcam_button.click(use_webcam, [webcam, face_index, already_aligned], load_outputs, api_name=False)

    @friendly
    def correct(s: Session | None, value, name, erase):
        s = loaded(s)
        layers = (value or {}).get("layers") or []
        if not layers:
            raise InvalidInputError("Paint on the crop first.")
        for layer in layers:
            s.segmentation = editor.sketch(s.segmentation, name, np.asarray(layer), erase=erase)
        return s, s.segmentation.overlay(s.aligned.crop)

    add_button.click(lambda s, v, n: correct(s, v, n, False), [session, sketch, sketch_segment], [session, overlay_view])
    remove_button.click(lambda s, v, n: correct(s, v, n, True), [session, sketch, sketch_segment], [session, overlay_view])

    @friendly
    def reset(s: Session | None):
        s = loaded(s)
        s.segmentation = s.automatic
        return s, *segment_outputs(s)

    reset_button.click(reset, [session], [session, *segment_views])

    @friendly
    def merge(s: Session | None, names):
        s = loaded(s)
        if len(names or []) < 2:
            raise InvalidInputError("Choose at least two segments to merge.")
        s.segmentation = s.segmentation.merge(names, "+".join(names))
        return s, *segment_outputs(s)

    merge_button.click(merge, [session, merge_choice], [session, *segment_views], api_name="merge")

    @friendly
    def split(s: Session | None, name):
        s = loaded(s)
        s.segmentation = s.segmentation.split(name)
        return s, *segment_outputs(s)

    split_button.click(split, [session, sketch_segment], [session, *segment_views], api_name="split")

    @friendly
    def invert(s: Session | None, space_name, preset_name, steps_value, reg, dilate, precision_name, chosen, with_baselines,
               progress=gr.Progress()):
        s = loaded(s)
        preset_steps, resolution, coarse = PRESETS[preset_name]
        config = InversionConfig(space=SPACES[space_name], steps=int(steps_value) or preset_steps, resolution=resolution,
                                 coarse_to_fine=coarse, reg_weight=float(reg), dilate_px=int(dilate), precision=precision_name)
        keep = [n for n in s.segmentation.names if n not in (chosen or [])]
        s.cancel.clear()
        result = editor.invert(s.aligned.crop, s.segmentation, config=config, keep=keep, size=work_size(editor),
                               progress=progress_reporter(s, progress, "chunky"))
        s.set_result(result)
        s.baselines = {}
        if with_baselines and not result.cancelled:
            for label, baseline_space in (("W", "w"), ("W+", "w+")):
                s.baselines[label] = editor.invert(s.aligned.crop, None, config=config.replace(space=baseline_space),
                                                   size=work_size(editor), progress=progress_reporter(s, progress, f"global {label}"))
        note = (f"Cancelled after {result.steps_run} steps (cancel pressed or the {MAX_SECONDS:.0f} s limit reached); "
                "showing the best result so far." if result.cancelled
                else f"Done: {result.steps_run} steps in {result.seconds:.1f} s.")
        return s, *result_outputs(s), note

    def result_outputs(s: Session):
        result = s.require_result()
        names = s.segmentation.names
        gallery = [(tensor_to_uint8(result.renders[k]), names[k]) for k in result.projected]
        losses = result.segment_losses
        table = [[names[k], k in result.keep, round(float(losses["lpips"][k]), 4), round(float(losses["l2"][k]), 4)]
                 for k in range(len(names))]
        return tensor_to_uint8(result.target), s.current(), gallery, table

    invert_button.click(
        on_gpu(invert), [session, space, preset, steps, reg_weight, dilate_px, precision, reproject, baselines],
        [session, photo_view, result_view, renders_view, metrics_view, status], api_name="invert")

    def cancel(s: Session | None):
        if s is not None:
            s.cancel.set()
        return "Cancelling…"

    cancel_button.click(cancel, [session], [status], queue=False, api_name="cancel")

    def strengths_of(values) -> dict[str, float]:
        return {d.name: float(v) for d, v in zip(directions, values) if v}

    @friendly
    def edit(s: Session | None, chosen_targets, *values):
        s = inverted(s)
        strengths = strengths_of(values)
        if not strengths:
            s.edit = None
            return s, s.current()
        s.edit = editor.edit(s.result, strengths, chosen_targets or None, names=s.segmentation.names)
        return s, s.current()

    @friendly
    def preview(s: Session | None, chosen_targets, *values):
        """While a slider moves: a quarter-resolution render of the edit; the session is not changed."""
        if s is None or s.result is None:
            return gr.update()
        strengths = strengths_of(values)
        size = max(64, work_size(editor) // 4)
        return tensor_to_uint8(editor.edit(s.result, strengths, chosen_targets or None, names=s.segmentation.names,
                                           resolution=min(size, s.result.target.shape[-1])).composite)

    for i, slider in enumerate(sliders):
        # previews and full renders share one queue lane, so a late preview never replaces a full render
        slider.input(preview, [session, targets, *sliders], [result_view], api_name=False, trigger_mode="always_last",
                     show_progress="hidden", concurrency_id="edit", concurrency_limit=1)
        slider.release(edit, [session, targets, *sliders], [session, result_view], api_name="edit" if i == 0 else False,
                       concurrency_id="edit", concurrency_limit=1)

    @friendly
    def freeze(s: Session | None, names, steps_value, progress=gr.Progress()):
        s = loaded(s)

        def reproject(frozen):
            s.cancel.clear()
            return editor.reproject(frozen, names, s.segmentation.names, steps=int(steps_value),
                                    progress=progress_reporter(s, progress, "re-project"))

        s.freeze(reproject if names else None)
        return s, s.current(), *[0.0] * len(sliders)

    @friendly
    def tune(s: Session | None, names, steps_value, progress=gr.Progress()):
        s = inverted(s)
        if not names:
            raise InvalidInputError("Choose the segments to fine-tune.")
        s.require_no_edit()  # before the slow part
        s.cancel.clear()
        result, start = s.result, time.perf_counter()
        for name in names:
            if s.cancel.is_set():
                break
            result = editor.tune(result, name, s.segmentation.names, steps=int(steps_value),
                                 progress=progress_reporter(s, progress, f"fine-tune {name}"))
        s.step_to(result)
        note = f"Fine-tuned {', '.join(names)} in {time.perf_counter() - start:.1f} s (undo goes back)."
        return s, *result_outputs(s), "Cancelled; kept what was tuned. " + note if s.cancel.is_set() else note

    @friendly
    def undo(s: Session | None):
        s = loaded(s)
        s.undo()
        return s, s.current(), *[0.0] * len(sliders)

    @friendly
    def refine(s: Session | None):
        s = inverted(s)
        if s.edit is not None and s.edit.renders.shape[-1] != s.result.target.shape[-1]:
            raise InvalidInputError("Release the slider first (refinement works on the full-resolution edit).")
        s.result, s.edit = editor.refine(s.result, s.edit)
        return s, s.current(), Segmentation(s.segmentation.names, s.result.masks).overlay(s.aligned.crop)

    @friendly
    def variations(s: Session | None, name, seed_value):
        s = inverted(s)
        s.variations = editor.variations(s.result, name, s.segmentation.names, seed=int(seed_value or 0))
        return s, [tensor_to_uint8(v.composite) for v in s.variations]

    def choose_variation(s: Session | None, event: gr.SelectData):
        if s is None or not s.variations:
            return s, gr.update()
        s.edit = s.variations[event.index]
        return s, s.current()

    variation_button.click(variations, [session, variation_segment, variation_seed], [session, variations_view],
                           api_name="variations")
    variations_view.select(choose_variation, [session], [session, result_view])
    @friendly
    def transfer(s: Session | None, path, name, aligned_flag, progress=gr.Progress()):
        s = inverted(s)
        if not path:
            raise InvalidInputError("Choose a reference photo first.")
        photo = read_image(Path(path), name=Path(path).name)
        aligned = editor.align(photo, skip_alignment=True if aligned_flag else None)
        segments = editor.segment(aligned.crop)
        keep = [n for n in segments.names if n in KEEP_BY_DEFAULT]
        s.cancel.clear()
        reference = editor.invert(aligned.crop, segments, config=s.result.config, keep=keep, size=work_size(editor),
                                  progress=progress_reporter(s, progress, "reference"))
        s.edit = editor.transfer(s.result, s.segmentation.names, reference, segments.names, name)
        return s, s.current()

    transfer_button.click(on_gpu(transfer), [session, reference_upload, transfer_segment_choice, already_aligned],
                          [session, result_view], api_name="transfer")
    refine_button.click(refine, [session], [session, result_view, overlay_view], api_name="refine")
    freeze_button.click(on_gpu(freeze), [session, reproject_after, reproject_steps], [session, result_view, *sliders],
                        api_name="freeze")
    tune_button.click(on_gpu(tune), [session, tune_choice, tune_steps],
                      [session, photo_view, result_view, renders_view, metrics_view, status], api_name="tune")
    undo_button.click(undo, [session], [session, result_view, *sliders], api_name="undo")

    @friendly
    def export(s: Session | None):
        s = inverted(s)
        return export_files(s)

    export_button.click(export, [session], [files], api_name="export")


def export_files(s: Session) -> list[str]:
    """Write the session's results to a fresh temporary folder: the edit pasted back into the photo (full
    resolution), the aligned crop, a labelled comparison grid, and the codes + masks."""
    _prune_exports()
    EXPORT_ROOT.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=EXPORT_ROOT))
    current = s.current()
    pasted = folder / "pasted_back.png"
    Image.fromarray(paste_back(current, s.aligned)).save(pasted)
    crop = folder / "aligned_crop.png"
    Image.fromarray(s.aligned.crop).save(crop)
    result = s.result
    columns = [("photo", tensor_to_uint8(result.target))]
    columns += [(f"global {k}", tensor_to_uint8(v.composite)) for k, v in s.baselines.items()]
    first = s.history[0] if s.history else result
    columns.append(("chunky", tensor_to_uint8(first.composite)))
    columns.append(("edited", current))
    grid = folder / "comparison.png"
    Image.fromarray(comparison_grid([[image for _, image in columns]], [label for label, _ in columns])).save(grid)
    codes = folder / "codes_and_masks.pt"
    torch.save({"codes": result.codes, "projected": result.projected, "keep": result.keep,
                "names": list(s.segmentation.names), "masks": result.masks, "config": result.config.to_json()}, codes)
    return [str(pasted), str(crop), str(grid), str(codes)]


def _prune_exports() -> None:
    """Delete export folders older than EXPORT_MAX_AGE_S (Gradio has served them by then)."""
    if not EXPORT_ROOT.is_dir():
        return
    now = time.time()
    for folder in EXPORT_ROOT.iterdir():
        try:
            if now - folder.stat().st_mtime > EXPORT_MAX_AGE_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def load_editor() -> tuple[ChunkyEditor | None, str]:
    """The editor named by CHUNKY_MODEL ("ffhq" by default, "tiny" for the test mode), or the reason it
    failed. Finished inversions are cached in CHUNKY_CACHE_DIR (default ~/.cache/chunky/inversions)."""
    try:
        editor = ChunkyEditor.tiny() if os.environ.get("CHUNKY_MODEL", "ffhq") == "tiny" else ChunkyEditor.from_pretrained()
    except ChunkyError as error:
        log.error("%s", error)
        return None, str(error)
    # created on demand; a failed write (read-only or full disk) only means no caching
    editor.cache = InversionCache(os.environ.get("CHUNKY_CACHE_DIR", Path.home() / ".cache" / "chunky" / "inversions"))
    return editor, ""


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    editor, error = load_editor()
    demo = build_demo(editor, startup_error=error)
    demo.queue(default_concurrency_limit=int(os.environ.get("CHUNKY_CONCURRENCY", "1")), max_size=32)
    demo.launch(server_name=os.environ.get("CHUNKY_HOST", "127.0.0.1"), max_file_size="64mb")


if __name__ == "__main__":
    main()
