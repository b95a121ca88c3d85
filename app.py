"""chunky in the browser: `python app.py` (CHUNKY_MODEL=tiny for the test mode: no downloads).

Widgets and wiring only. A user's work is one `chunky.session.Session` in `gr.State`; every handler is a
module-level function `(editor or session, inputs) -> message`, wrapped so that the page is redrawn from
the session (`screen`) after every action, and a refused action shows its message without touching the
outputs. Files are written to fresh private temporary folders, never to fixed paths.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch

from chunky import views
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.errors import ChunkyError, InvalidInputError
from chunky.export import export_session
from chunky.images import read_image, tensor_to_uint8
from chunky.session import KEEP_BY_DEFAULT, Session, open_session

log = logging.getLogger("chunky.app")

try:  # Hugging Face ZeroGPU Spaces: borrow a GPU for the long calls; elsewhere a no-op
    import spaces

    on_gpu = spaces.GPU(duration=300)
except ImportError:
    def on_gpu(fn):
        return fn

PRESETS = {"Preview": (40, 128, False), "Balanced": (150, 256, False), "Best": (400, 256, True)}  # steps, px, coarse
SPACES = {"W": "w", "W+": "w+", "S": "s"}
MAX_SLIDERS = 64  # direction sliders shown (user folders can hold many files)
IMAGE_HEIGHT = 320
MAX_SECONDS = float(os.environ.get("CHUNKY_MAX_SECONDS", "900"))  # one request's time limit, all its runs together
EXPORT_MAX_AGE_S = 3600  # export folders older than this are deleted at the next export
EXPORT_ROOT = Path(tempfile.mkdtemp(prefix="chunky-exports-"))  # private to this process (mode 0700)


# ------------------------------------------------------------------------------------ the screen
def screen(page: "Page", s: Session | None, message: str, *, segments: bool = True, inversion: bool = True) -> list:
    """Every output of `SCREEN_PARTS` plus the sliders, drawn from the session: what the page shows is a
    function of the state. ``segments`` / ``inversion`` False leave those (unchanged) parts as they are."""
    keep = gr.update()
    if s is None:
        return [None, message] + [keep] * (len(SCREEN_PARTS) - 2 + len(page.names))
    state, names = s.state, list(s.names)
    chosen = [n for n in names if n not in KEEP_BY_DEFAULT]
    segment_parts = [s.aligned.crop, state.segmentation.overlay(s.target_image), views.legend(s),
                     gr.update(choices=names, value=chosen), gr.update(choices=names, value=names[0]),
                     gr.update(choices=names, value=[]), gr.update(choices=names, value=(chosen or names)[0]),
                     gr.update(choices=names, value=[]), gr.update(choices=names, value=[])] if segments else [keep] * 9
    inversion_parts = [s.target_image, views.renders(s), views.metrics(s), views.baselines(s)] if inversion else [keep] * 4
    strengths = s.strengths()
    return [s, message, *segment_parts, gr.update(choices=names, value=list(state.targets)), s.display(),
            *inversion_parts, *(strengths.get(name, 0.0) for name in page.names)]


@dataclass(frozen=True)
class Page:
    """What every handler is given first: the shared editor and the direction names behind the sliders."""

    editor: ChunkyEditor
    names: tuple[str, ...]


SCREEN_PARTS = ("session", "status", "crop", "overlay", "legend", "reproject", "sketch_segment", "merge_choice",
                "variation_segment", "reproject_after", "tune_choice", "targets", "result", "photo", "renders", "metrics",
                "baselines")


def action(fn=None, *, segments=False, inversion=False, extras=0):
    """Wrap a handler ``fn(page, *inputs) -> (session, message[, extras...])`` into one that returns the
    screen; a refused action (a library error) shows its message and changes nothing on the page."""
    if fn is None:
        return functools.partial(action, segments=segments, inversion=inversion, extras=extras)

    @functools.wraps(fn)
    def wrapper(page: Page, *args, **kwargs):
        start = time.perf_counter()
        try:
            s, message, *more = fn(page, *args, **kwargs)
        except ChunkyError as error:
            return refused(page, str(error), extras)
        except torch.OutOfMemoryError:
            return refused(page, "Out of memory: choose the Preview preset or fewer segments.", extras)
        except Exception as error:  # the UI never shows a traceback; the log keeps it
            log.exception("unexpected error in %s", fn.__name__)
            return refused(page, f"Something went wrong ({type(error).__name__}); your work is unchanged.", extras)
        took = time.perf_counter() - start
        note = f"{message} ({took:.1f} s)" if took >= 0.1 else message
        return [*screen(page, s, note, segments=segments, inversion=inversion), *more]

    return wrapper


def refused(page: Page, message: str, extras: int) -> list:
    gr.Warning(message)
    return [gr.update(), f"⚠ {html.escape(message)}"] + [gr.update()] * (len(SCREEN_PARTS) - 2 + len(page.names) + extras)


def reporter(s: Session, progress: gr.Progress, label: str, start: float):
    """An optimisation progress callback: updates the bar; stops on cancel or when this request has run
    MAX_SECONDS in all (baselines and re-projections included)."""
    def callback(step, total, info):
        progress((step, total), desc=f"{label}: loss {info['loss']:.3f}, about {info['eta']:.0f} s left")
        return not s.cancel.is_set() and time.perf_counter() - start < MAX_SECONDS
    return callback


def loaded(s: Session | None) -> Session:
    if s is None:
        raise InvalidInputError("Load a photo first (step 1).")
    return s


# ------------------------------------------------------------------------------------ handlers
@action(segments=True, inversion=True, extras=1)
def load_photo(page: Page, path, face_index, aligned_flag):
    if not path:
        raise InvalidInputError("Choose a photo (upload or webcam) first.")
    return start(page, read_image(Path(path), name=Path(path).name), face_index, aligned_flag, Path(path).name)


@action(segments=True, inversion=True, extras=1)
def random_face(page: Page, seed):
    face = page.editor.random_face(int(seed or 0), resolution=page.editor.work_size())
    return start(page, face, 0, True, f"Random face #{int(seed or 0)}")


@action(segments=True, inversion=True, extras=1)
def open_work(page: Page, path):
    if not path:
        raise InvalidInputError("Choose a work.pt file from an earlier export first.")
    s = open_session(page.editor, path)
    return s, f"Opened {html.escape(Path(path).name)}: continue editing where you left off.", s.aligned.crop


def start(page: Page, photo, face_index, aligned_flag, source):
    s = Session.start(page.editor, photo, face_index=int(face_index or 0), skip_alignment=True if aligned_flag else None)
    a = s.aligned
    found = "used as an aligned crop" if a.skipped else f"{a.face_count} face(s) found, using face {a.face_index}"
    return s, (f"{html.escape(source)}: {found}. {html.escape(a.note)} Next: check the segments (step 2), then Invert "
               "(step 3)."), a.crop


@action(segments=True)
def sketch(page: Page, s, value, name, erase):
    loaded(s).sketch(name, (value or {}).get("layers") or [], erase=bool(erase))
    return s, f"{'Removed painted pixels from' if erase else 'Added painted pixels to'} {html.escape(str(name))}."


@action(segments=True, inversion=True)
def change_segments(page: Page, s, kind, names, name):
    s = loaded(s)
    {"merge": lambda: s.merge(names or []), "split": lambda: s.split(name), "reset": s.reset_segments}[kind]()
    carried = " Codes were carried over from the parent segments; Invert again for a fresh fit." if s.state.result else ""
    return s, f"Segments: {kind} done.{carried}"


@action(inversion=True)
def invert(page: Page, s, space, preset, steps, reg, dilate, precision, chosen, with_baselines, progress=gr.Progress()):
    s = loaded(s)
    preset_steps, resolution, coarse = PRESETS[preset]
    config = InversionConfig(space=SPACES[space], steps=int(steps) or preset_steps, resolution=resolution,
                             coarse_to_fine=coarse, reg_weight=float(reg), dilate_px=int(dilate), precision=precision)
    result = s.invert(config, keep=[n for n in s.names if n not in (chosen or [])], baselines=bool(with_baselines),
                      progress=reporter(s, progress, "inverting", time.perf_counter()))
    if result.cancelled:
        return s, (f"Stopped after {result.steps_run} steps (Cancel, or the {MAX_SECONDS:.0f} s limit); showing the best "
                   "result so far. Next: edit with the sliders (step 4).")
    return s, f"Done: {result.steps_run} steps. Next: move a slider (step 4), then Export (step 5)."


def commit_sliders(page: Page, s, targets, values) -> Session:
    """Make the sliders' values (an input of every handler that needs them) the session's edit."""
    s = loaded(s)
    s.set_edit(dict(zip(page.names, (float(v or 0) for v in values))), targets or ())
    return s


@action
def edit(page: Page, s, targets, *values):
    s = commit_sliders(page, s, targets, values)
    return s, "Edited. Freeze to build the next edit on top of this one, or Export (step 5)." if s.state.edit else "No edit."


def preview(page: Page, s, targets, *values):
    """While a slider moves: a quarter-resolution render of the edit; the session is not changed."""
    if s is None or s.state.result is None:
        return gr.update()
    try:
        strengths = {n: float(v) for n, v in zip(page.names, values) if v}
        return tensor_to_uint8(s.editor.edit(s.state.result, strengths, targets or None, names=s.names,
                                             resolution=max(16, s.editor.work_size() // 4)).composite)
    except (ChunkyError, ValueError, TypeError):
        return gr.update()


@action(inversion=True)
def freeze(page: Page, s, targets, reproject_names, steps, progress=gr.Progress(), *values):
    s = commit_sliders(page, s, targets, values)
    s.freeze(reproject_names or (), steps=int(steps), progress=reporter(s, progress, "re-projecting", time.perf_counter()))
    return s, "Frozen: the next edit builds on this one (Undo goes back). Sliders are back at 0."


@action(segments=True, inversion=True)
def refine(page: Page, s, targets, *values):
    commit_sliders(page, s, targets, values).refine()
    return s, "Boundaries refined (level set). Undo goes back."


@action(extras=1)
def variations(page: Page, s, segment, seed, targets, *values):
    offers = commit_sliders(page, s, targets, values).variations(segment, seed=int(seed or 0))
    return s, f"{len(offers)} variations of {html.escape(str(segment))}: click one to use it.", offers


@action(inversion=True)
def choose_variation(page: Page, s, event: gr.SelectData):
    loaded(s).choose_variation(int(event.index))
    return s, "Variation adopted; the slider edit stays on top. Undo goes back."


@action(segments=True, inversion=True)
def transfer(page: Page, s, path, segment, aligned_flag, targets, progress=gr.Progress(), *values):
    s = commit_sliders(page, s, targets, values)
    if not path:
        raise InvalidInputError("Choose a reference photo first.")
    photo = read_image(Path(path), name=Path(path).name)
    s.transfer(photo, segment, skip_alignment=True if aligned_flag else None,
               progress=reporter(s, progress, "inverting the reference", time.perf_counter()))
    return s, f"Took the {html.escape(str(segment))} from the reference photo. Undo goes back."


@action(inversion=True)
def tune(page: Page, s, segments, steps, targets, progress=gr.Progress(), *values):
    s = commit_sliders(page, s, targets, values)
    seconds = s.tune(segments or (), steps=int(steps), progress=reporter(s, progress, "fine-tuning", time.perf_counter()))
    return s, f"Fine-tuned {html.escape(', '.join(dict.fromkeys(segments)))} in {seconds:.0f} s. Undo goes back."


@action(segments=True, inversion=True)
def undo(page: Page, s):
    undone = loaded(s).undo()
    return s, f"Undid “{html.escape(undone)}”."


@action(extras=2)
def export(page: Page, s, targets, tile, captions, *values):
    s = commit_sliders(page, s, targets, values)
    _prune_exports()
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=EXPORT_ROOT))
    perceptual = s.editor.perceptual("lpips-alex") if captions else None
    done = export_session(s, folder, tile=int(tile), captions=bool(captions), perceptual=perceptual)
    return s, "Exported exactly what is shown: download the files below.", [str(f) for f in done.files], done.grid


def bind(page: Page, handler):
    """``handler`` with ``page`` given, keeping the signature Gradio reads (progress bars, event data)."""
    def bound(*args, **kwargs):
        return handler(page, *args, **kwargs)

    signature = inspect.signature(handler)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    bound.__annotations__ = {k: v for k, v in handler.__annotations__.items() if k != "page"}
    bound.__name__ = bound.__qualname__ = handler.__name__
    return bound


def cancel(s):
    if s is not None:
        s.cancel.set()
    return "Cancelling…"


def _prune_exports() -> None:
    """Delete this process's export folders older than EXPORT_MAX_AGE_S (Gradio has served them by then)."""
    now = time.time()
    for folder in EXPORT_ROOT.iterdir():
        if not folder.is_symlink() and folder.is_dir() and now - folder.stat().st_mtime > EXPORT_MAX_AGE_S:
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------ the page
def build_demo(editor: ChunkyEditor | None, *, startup_error: str = "") -> gr.Blocks:
    """Lay out the page and wire it to ``editor``. With no editor, the page explains ``startup_error``."""
    with gr.Blocks(title="chunky: ChunkyGAN in the browser", delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# chunky\nReal image inversion via segments ([ChunkyGAN](https://arxiv.org/abs/2208.11727), "
                    "ECCV 2022): every face segment gets its own StyleGAN2 code.")
        if editor is None:
            gr.Markdown("**The model could not be loaded.** What happened and how to fix it:")
            gr.Textbox(startup_error, show_label=False, lines=4, interactive=False, elem_id="startup-error")
            gr.Markdown("To try the page without any download, start the test mode: `CHUNKY_MODEL=tiny python app.py` "
                        "(a tiny random model: its outputs are noise, not faces).")
            return demo
        gr.Markdown(f"Model: **{html.escape(editor.label)}** · device: {editor.device.type}")
        directions = editor.directions()[:MAX_SLIDERS]
        groups = list(dict.fromkeys(d.group for d in directions))
        directions = sorted(directions, key=lambda d: groups.index(d.group))  # slider order = direction order
        page = Page(editor, tuple(d.name for d in directions))
        c = {"session": gr.State(None)} | photo_step() | segments_step() | invert_step(editor) | result_step()
        c |= edit_step(directions) | export_step()
        wire(page, c)
    return demo


def photo_step() -> dict:
    c = {}
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("### 1 · Photo")
            c["upload"] = gr.File(label="Photo (PNG, JPEG, WebP, ...)", file_types=["image"], type="filepath", elem_id="upload")
            with gr.Row():
                c["face_index"] = gr.Number(value=0, precision=0, minimum=0, label="Face (0 = largest)")
                c["aligned"] = gr.Checkbox(value=False, label="Already an aligned face crop")
            c["load"] = gr.Button("Load photo", variant="primary", elem_id="load")
            with gr.Row():
                c["seed"], c["random"] = gr.Number(value=0, precision=0, label="Seed"), gr.Button("Random face")
            with gr.Accordion("…or take a photo with the webcam", open=False):
                c["webcam"] = gr.Image(sources=["webcam"], type="filepath", label="Webcam", format="png")
                c["webcam_button"] = gr.Button("Use this photo")
            with gr.Accordion("…or continue from an export (work.pt)", open=False):
                c["work_file"] = gr.File(label="work.pt", file_types=[".pt"], type="filepath", elem_id="work-file")
                c["open"] = gr.Button("Open")
        for name, label in (("crop", "Aligned face"), ("overlay", "Segments")):
            c[name] = gr.Image(label=label, type="numpy", format="png", interactive=False, elem_id=name, height=IMAGE_HEIGHT)
    return c


def segments_step() -> dict:
    c = {}
    with gr.Accordion("2 · Segments: choose what to re-project, sketch corrections, merge or split", open=False):
        c["legend"] = gr.Markdown()
        c["reproject"] = gr.CheckboxGroup(label="Re-project (unchecked segments are taken straight from the photo)",
                                          elem_id="reproject")
        with gr.Row():
            c["sketch"] = gr.ImageEditor(label="Sketch on the crop", type="numpy", layers=False, eraser=False,
                                         brush=gr.Brush(colors=["#ff0000"], color_mode="fixed"))
            with gr.Column():
                c["sketch_segment"] = gr.Dropdown(label="Segment to correct")
                for name, label in (("add", "Add painted pixels to it"), ("remove", "Remove painted pixels from it"),
                                    ("split", "Split it by parser label")):
                    c[name] = gr.Button(label)
                c["merge_choice"] = gr.CheckboxGroup(label="Segments to merge into one")
                c["merge"], c["reset"] = gr.Button("Merge"), gr.Button("Reset to automatic")
    return c


def invert_step(editor: ChunkyEditor) -> dict:
    c, on_cpu = {}, editor.device.type != "cuda"
    gr.Markdown("### 3 · Invert")
    with gr.Row():
        c["space"] = gr.Radio(list(SPACES), value="W+", label="Latent space")
        c["preset"] = gr.Radio(list(PRESETS), value="Preview" if on_cpu else "Balanced", label="Quality")
        c["baselines_flag"] = gr.Checkbox(value=False, label="Also run global W and W+ (shown side by side)")
    with gr.Accordion("Advanced", open=False), gr.Row():
        c["steps"] = gr.Slider(0, 1000, value=0, step=10, label="Steps (0 = from the preset)", elem_id="steps")
        c["reg"] = gr.Slider(0, 50, value=0, step=1, label="Regulariser (pull toward the mean face; the authors' tool uses 10)")
        c["dilate"] = gr.Slider(0, 32, value=InversionConfig().dilate_px, step=1, label="Segment overlap (px)")
        c["precision"] = gr.Radio(["fp32", "bf16"], value="bf16" if on_cpu else "fp32", label="Precision")
    with gr.Row():
        c["invert"] = gr.Button("Invert", variant="primary", elem_id="invert")
        c["cancel"] = gr.Button("Cancel", elem_id="cancel")
    return c


def result_step() -> dict:
    c = {}
    gr.Markdown("### 4 · Result and edits")
    with gr.Row():
        for name, label in (("photo", "Photo (aligned)"), ("result", "Result")):
            c[name] = gr.Image(label=label, type="numpy", format="png", interactive=False, elem_id=name, height=IMAGE_HEIGHT)
        with gr.Column():
            c["status"] = gr.Markdown("Start with step 1: upload a photo or make a random face.", elem_id="status")
            c["undo"] = gr.Button("Undo", elem_id="undo")
    with gr.Row():
        c["renders"] = gr.Gallery(label="Per-segment renders", columns=6, height=220)
        c["baselines"] = gr.Gallery(label="Global codes vs. per-segment codes (L2 to the photo)", columns=3, height=220,
                                    elem_id="baselines")
    c["metrics"] = gr.Dataframe(headers=["segment", "kept", "LPIPS", "L2"], label="Reconstruction", interactive=False)
    return c


def edit_step(directions) -> dict:
    c, sliders = {"targets": gr.CheckboxGroup(label="Apply edits to (none checked = every projected segment)",
                                              elem_id="targets")}, []
    for group in dict.fromkeys(d.group for d in directions):
        with gr.Accordion(f"Directions: {group}", open=not sliders):
            sliders += [gr.Slider(*d.limits, value=0.0, step=0.05 if d.limits[1] <= 1 else 0.1, label=d.name, elem_id=f"slider-{len(sliders) + i}")
                        for i, d in enumerate(d for d in directions if d.group == group)]
    with gr.Row():
        c["refine"] = gr.Button("Refine boundaries (level set)", elem_id="refine")
        c["freeze"] = gr.Button("Freeze (edit on top of this)", elem_id="freeze")
        c["reproject_after"] = gr.CheckboxGroup(label="When freezing, re-project these segments against the frozen result",
                                                elem_id="reproject-after", scale=2)
        c["reproject_steps"] = gr.Slider(10, 300, value=30, step=10, label="Re-projection steps")
    with gr.Accordion("Variations of one segment", open=False), gr.Row():
        c["variation_segment"] = gr.Dropdown(label="Variations of")
        c["variation_seed"], c["variations"] = gr.Number(value=0, precision=0, label="Seed"), gr.Button("Show variations")
        c["offers"] = gr.Gallery(label="Variations (click one to use it)", columns=4, height=200)
    with gr.Accordion("Take a segment from a reference photo", open=False), gr.Row():
        c["reference"] = gr.File(label="Reference photo", file_types=["image"], type="filepath")
        c["transfer_segment"] = gr.Dropdown(["hair", "eyes", "brows", "nose", "mouth", "skin"], value="hair", label="Segment")
        c["transfer"] = gr.Button("Transfer")
    with gr.Accordion("Fine-tune the generator for some segments (pivotal tuning; slow on a CPU)", open=False), gr.Row():
        c["tune_choice"] = gr.CheckboxGroup(label="Segments to fine-tune", elem_id="tune-segments", scale=3)
        c["tune_steps"] = gr.Slider(10, 200, value=40, step=10, label="Steps per segment")
        c["tune"] = gr.Button("Fine-tune", elem_id="tune")
    return c | {"sliders": sliders}


def export_step() -> dict:
    c = {}
    gr.Markdown("### 5 · Export")
    with gr.Row():
        c["tile"] = gr.Slider(64, 1024, value=256, step=64, label="Grid tile size (px)")
        c["captions"] = gr.Checkbox(value=False, label="Metric captions in the grid (L2, LPIPS)")
        c["export"] = gr.Button("Export", variant="primary", elem_id="export")
    with gr.Row():
        c["grid"] = gr.Image(label="Comparison grid (what the export holds)", type="numpy", format="png", interactive=False,
                             elem_id="grid")
        c["files"] = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
    return c


def wire(page: Page, c: dict) -> None:
    """Connect every button to its handler; every handler's outputs start with `SCREEN_PARTS` and the sliders."""
    out = [c[name] for name in SCREEN_PARTS] + c["sliders"]
    s, sliders, edit_in = c["session"], c["sliders"], [c["session"], c["targets"]]
    loading = dict(outputs=out + [c["sketch"]])
    c["load"].click(bind(page, load_photo), [c["upload"], c["face_index"], c["aligned"]], api_name="load", **loading)
    c["random"].click(bind(page, random_face), [c["seed"]], api_name="random_face", **loading)
    c["webcam_button"].click(bind(page, load_photo), [c["webcam"], c["face_index"], c["aligned"]], api_name="webcam",
                             **loading)
    c["open"].click(bind(page, open_work), [c["work_file"]], api_name="open", **loading)
    for button, erase in ((c["add"], False), (c["remove"], True)):
        button.click(bind(page, sketch), [s, c["sketch"], c["sketch_segment"], gr.State(erase)], out, api_name=False)
    for kind in ("merge", "split", "reset"):
        c[kind].click(bind(page, change_segments), [s, gr.State(kind), c["merge_choice"], c["sketch_segment"]], out,
                      api_name=kind)
    c["invert"].click(on_gpu(bind(page, invert)), [s, c["space"], c["preset"], c["steps"], c["reg"], c["dilate"],
                                                   c["precision"], c["reproject"], c["baselines_flag"]], out, api_name="invert")
    c["cancel"].click(cancel, [s], [c["status"]], queue=False, api_name="cancel")
    for i, slider in enumerate(sliders):  # previews and full renders share one lane: a late preview never wins
        slider.input(bind(page, preview), [*edit_in, *sliders], [c["result"]], api_name=False, trigger_mode="always_last",
                     show_progress="hidden", concurrency_id="edit", concurrency_limit=1)
        slider.release(bind(page, edit), [*edit_in, *sliders], out, api_name="edit" if i == 0 else False,
                       concurrency_id="edit", concurrency_limit=1)
    c["freeze"].click(on_gpu(bind(page, freeze)), [*edit_in, c["reproject_after"], c["reproject_steps"], *sliders], out,
                      api_name="freeze")
    c["refine"].click(bind(page, refine), [*edit_in, *sliders], out, api_name="refine")
    c["variations"].click(bind(page, variations), [s, c["variation_segment"], c["variation_seed"], c["targets"], *sliders],
                          out + [c["offers"]], api_name="variations")
    c["offers"].select(bind(page, choose_variation), [s], out, api_name="choose_variation")
    c["transfer"].click(on_gpu(bind(page, transfer)), [s, c["reference"], c["transfer_segment"], c["aligned"], c["targets"],
                                                       *sliders], out, api_name="transfer")
    c["tune"].click(on_gpu(bind(page, tune)), [s, c["tune_choice"], c["tune_steps"], c["targets"], *sliders], out,
                    api_name="tune")
    c["undo"].click(bind(page, undo), [s], out, api_name="undo")
    c["export"].click(bind(page, export), [*edit_in, c["tile"], c["captions"], *sliders], out + [c["files"], c["grid"]],
                      api_name="export")


def load_editor() -> tuple[ChunkyEditor | None, str]:
    """The editor named by CHUNKY_MODEL ("ffhq" by default, "tiny" for the test mode), or why it failed.
    Without network the Hub is not retried: cached files are used, missing ones fail at once."""
    from chunky.cache import InversionCache
    from chunky.weights import hub_reachable

    tiny = os.environ.get("CHUNKY_MODEL", "ffhq") == "tiny"
    if not tiny and not os.environ.get("HF_HUB_OFFLINE") and not hub_reachable():
        log.warning("the Hugging Face Hub is not reachable: using cached files only")
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        editor = ChunkyEditor.tiny() if tiny else ChunkyEditor.from_pretrained()
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
    demo.launch(max_file_size="64mb")  # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address (Spaces set them)


if __name__ == "__main__":
    main()
