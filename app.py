"""chunky in the browser: `python app.py` (CHUNKY_MODEL=small: the bundled small face model, no downloads).

Widgets and wiring only: a user's work is one `chunky.session.Session` in `gr.State`; after every handler the
page is redrawn from it (`screen`), and a refused action shows its message without touching the outputs.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import torch

from chunky import views
from chunky.calibration import Estimates
from chunky.config import MAX_STEPS, PRESET_NAMES, InversionConfig, whole
from chunky.editor import ChunkyEditor, editor_from_environment
from chunky.errors import ChunkyError, InvalidInputError
from chunky.export import FolderBudget, export_session
from chunky.images import read_image
from chunky.jobs import JobQueue
from chunky.session import KEEP_BY_DEFAULT, Session
from chunky.workfile import read_work

log = logging.getLogger("chunky.app")

try:  # Hugging Face ZeroGPU Spaces: borrow a GPU for the long calls; elsewhere a no-op
    from spaces import GPU
    on_gpu = GPU(duration=300)
except ImportError:
    on_gpu = lambda fn: fn  # noqa: E731

ESTIMATES = Estimates()  # each preset's time on this device, measured in the background at start-up (main)
SPACES = {"W": "w", "W+": "w+", "S": "s"}
MAX_SLIDERS = 64  # direction sliders shown (user folders can hold many files)
IMAGE_HEIGHT = 320
MAX_SECONDS = float(os.environ.get("CHUNKY_MAX_SECONDS", "900"))  # one request's time limit, all its runs together
EXPORTS = FolderBudget(max_age_s=3600, max_bytes=2 << 30)  # private to this process; pruned at each export
JOBS = JobQueue(slots=int(os.environ.get("CHUNKY_CONCURRENCY", "1")), max_waiting=8)  # long jobs, one per session
SESSION_TTL_S = 2 * 3600  # a session's state is dropped this long after its last change (API clients included)


def screen(page: Page, s: Session | None, message: str, before=None) -> list:
    """Every output of `SCREEN_PARTS` plus the sliders, drawn from the session: what the page shows is a function
    of the state. Parts that did not change since the ``before`` state are left as they are (no re-encoding)."""
    keep, state, names = gr.update(), s.state, list(s.names)
    segments = before is None or state.segmentation is not before.segmentation
    inversion = before is None or state.result is not before.result or state.baselines is not before.baselines
    chosen = [n for n in names if n not in KEEP_BY_DEFAULT]
    segment_parts = [s.aligned.crop, state.segmentation.overlay(s.target_image), views.legend(s),  # strokes applied: cleared
                     {"background": s.target_image, "layers": [], "composite": s.target_image},
                     gr.update(choices=names, value=chosen), gr.update(choices=names, value=names[0]),
                     gr.update(choices=names, value=[]), gr.update(choices=names, value=(chosen or names)[0]),
                     gr.update(choices=names, value=[]), gr.update(choices=names, value=[])] if segments else [keep] * 10
    inversion_parts = [s.target_image, views.renders(s), views.metrics(s), views.baselines(s)] if inversion else [keep] * 4
    strengths = s.strengths()
    return [s, message, *segment_parts, gr.update(choices=names, value=list(state.targets)), s.display(),
            *inversion_parts, *(strengths.get(name, 0.0) for name in page.names)]


SCREEN_PARTS = ("session status crop overlay legend sketch reproject sketch_segment merge_choice variation_segment reproject_after "
                "tune_choice targets result photo renders metrics baselines").split()


def action(fn=None, *, extras=0, needs_session=True, sliders=False, long=False):
    """Wrap a handler ``fn(page, *inputs) -> (session, message[, extras...])`` into one returning the screen. With
    ``sliders``, inputs are ``(session, targets, ..., *slider values)`` and the sliders become the edit first;
    a ``long`` job waits for its turn in `JOBS` (one per session)."""
    if fn is None:
        return functools.partial(action, extras=extras, needs_session=needs_session, sliders=sliders, long=long)

    @functools.wraps(fn)
    def wrapper(page: Page, *args, **kwargs):
        start = time.perf_counter()
        try:
            if needs_session and args[0] is None:
                raise InvalidInputError("Load a photo first (step 1).")
            waiting = lambda n, eta: [a(0, desc=f"{n} ahead, ~{eta:.0f} s") for a in args if isinstance(a, gr.Progress)]  # noqa: E731
            with JOBS.admit(args[0], label=fn.__name__, on_wait=waiting) if long else contextlib.nullcontext(), \
                    args[0].acting(wait=long) if needs_session else contextlib.nullcontext():
                if sliders:
                    args, values = args[:len(args) - len(page.names)], args[len(args) - len(page.names):]
                    args[0].set_edit(dict(zip(page.names, (float(v or 0) for v in values))), args[1] or ())
                before = args[0].state if needs_session else None
                s, message, *more = fn(page, *args, **kwargs)
            took = time.perf_counter() - start
            return [*screen(page, s, f"{message} ({took:.1f} s)" if took >= 0.1 else message, before), *more]
        except ChunkyError as error:
            message = str(error)
        except torch.OutOfMemoryError:
            message = "Out of memory: choose the Preview preset or fewer segments."
        except Exception as error:  # the UI never shows a traceback; the log keeps it
            log.exception("unexpected error in %s", fn.__name__)
            message = f"Something went wrong ({type(error).__name__}); your work is unchanged."
        gr.Warning(message)
        return [gr.update(), f"⚠ {html.escape(message)}"] + [gr.update()] * (len(SCREEN_PARTS) - 2 + len(page.names) + extras)

    if sliders:  # Gradio passes the slider values last
        parameters = [*inspect.signature(fn).parameters.values(), inspect.Parameter("values", inspect.Parameter.VAR_POSITIONAL)]
        wrapper.__signature__ = inspect.signature(fn).replace(parameters=parameters)
    return wrapper


class Page:
    """The handlers, wrapped by `action`; ``editor``: the shared models, ``names``: each slider's direction."""

    def __init__(self, editor: ChunkyEditor, names: tuple[str, ...]):
        self.editor, self.names = editor, names

    @staticmethod
    def bar(s: Session, progress: gr.Progress, label: str):
        """The session's progress callback for one request (stops on Cancel or after MAX_SECONDS), shown as a bar."""
        return s.progress(lambda step, total, text: progress((step, total), desc=f"{label}: {text}"), seconds=MAX_SECONDS)

    @action(needs_session=False)
    def load_photo(self, path, face_index, aligned_flag):
        if not path:
            raise InvalidInputError("Choose a photo (upload or webcam) first.")
        return self.start(read_image(Path(path), name=Path(path).name), face_index, aligned_flag, Path(path).name)

    @action(needs_session=False)
    def random_face(self, seed):
        face = self.editor.random_face(seed, resolution=self.editor.work_size())
        return self.start(face, 0, True, f"Random face #{seed}")

    @action(needs_session=False)
    def open_work(self, path):
        if not path:
            raise InvalidInputError("Choose a work.pt file from an earlier export first.")
        return read_work(self.editor, path), f"Opened {html.escape(Path(path).name)}: continue where you left off."

    def start(self, photo, face_index, aligned_flag, source):
        s = Session.start(self.editor, photo, face_index=face_index, skip_alignment=True if aligned_flag else None)
        a = s.aligned
        found = "used as an aligned crop" if a.skipped else f"{a.face_count} face(s) found, using face {a.face_index}"
        return s, f"{html.escape(source)}: {found}. {html.escape(a.note)} Next: check the segments (2), then Invert (3)."

    @action
    def change_segments(self, s, kind, sketched, names, name):
        layers = [read_image(Path(p), name="the sketch", alpha=True) for p in (sketched or {}).get("layers") or []]
        {"add": lambda: s.sketch(name, layers), "merge": lambda: s.merge(names or []), "split": lambda: s.split(name),
         "remove": lambda: s.sketch(name, layers, erase=True), "reset": s.reset_segments}[kind]()
        carried = " Codes were carried over from the parent segments; Invert again for a fresh fit." if s.state.result else ""
        return s, f"Segments: {kind} done.{carried}"

    @action(long=True)
    def invert(self, s, space, preset, steps, reg, dilate, precision, chosen, with_baselines, progress=gr.Progress()):
        overlap = whole("overlap", dilate, 0, 64)
        config = self.editor.preset(preset, space=SPACES[space], reg_weight=reg, dilate_px=overlap, precision=precision)
        config = config.replace(steps=whole("steps", steps, 0, MAX_STEPS)) if steps else config
        result = s.invert(config, keep=[n for n in s.names if n not in (chosen or [])], baselines=bool(with_baselines),
                          progress=self.bar(s, progress, "inverting"))
        if result.cancelled:
            return s, f"Stopped after {result.steps_run} steps (Cancel, or the {MAX_SECONDS:.0f} s limit): the best so far."
        return s, f"Done: {result.steps_run} steps, {result.passes} generator passes. Next: move a slider (4), then Export (5)."

    @action(sliders=True)
    def edit(self, s, targets):
        return s, "Edited. Freeze to build the next edit on top of this one, or Export (step 5)." if s.state.edit else "No edit."

    def preview(self, s, targets, *values):
        """While a slider moves: a quarter-resolution render of the edit; the session is not changed."""
        try:
            image = s.preview(dict(zip(self.names, (float(v or 0) for v in values))), targets or ())
            return gr.update() if image is None else image
        except (AttributeError, ChunkyError, ValueError, TypeError):  # no session yet, or a value being typed
            return gr.update()

    @action(sliders=True, long=True)
    def freeze(self, s, targets, reproject_names, steps, progress=gr.Progress()):
        s.freeze(reproject_names or (), steps=steps, progress=self.bar(s, progress, "re-projecting"))
        return s, "Frozen: the next edit builds on this one (Undo goes back). Sliders are back at 0."

    @action(sliders=True)
    def refine(self, s, targets):
        s.refine()
        return s, "Boundaries refined (level set). Undo goes back."

    @action(extras=1, sliders=True)
    def variations(self, s, targets, segment, seed):
        offers = s.variations(segment, seed=seed)
        return s, f"{len(offers)} variations of {html.escape(str(segment))}: click one to use it.", offers

    @action
    def choose_variation(self, s, event: gr.SelectData):
        s.choose_variation(int(event.index))
        return s, "Variation adopted; the slider edit stays on top. Undo goes back."

    @action(sliders=True, long=True)
    def transfer(self, s, targets, path, segment, aligned_flag, progress=gr.Progress()):
        if not path:
            raise InvalidInputError("Choose a reference photo first.")
        photo = read_image(Path(path), name=Path(path).name)
        s.transfer(photo, segment, skip_alignment=True if aligned_flag else None,
                   progress=self.bar(s, progress, "inverting the reference"))
        return s, f"Took the {html.escape(str(segment))} from the reference photo. Undo goes back."

    @action(sliders=True, long=True)
    def tune(self, s, targets, segments, steps, progress=gr.Progress()):
        seconds = s.tune(segments or (), steps=steps, progress=self.bar(s, progress, "fine-tuning"))
        return s, f"Fine-tuned {html.escape(', '.join(dict.fromkeys(segments)))} in {seconds:.0f} s. Undo goes back."

    @action
    def undo(self, s):
        undone = s.undo()
        return s, f"Undid “{html.escape(undone)}”."

    @action(extras=2, sliders=True)
    def export(self, s, targets, tile, captions):
        done = export_session(s, EXPORTS.new(), tile=tile, captions=bool(captions),
                              perceptual=s.editor.perceptual("lpips-alex") if captions else None)
        return s, "Exported exactly what is shown: download the files below.", [str(f) for f in done.files], done.grid

    preset_choices = staticmethod(lambda: gr.update(choices=ESTIMATES.choices(PRESET_NAMES)))
    cancel = staticmethod(lambda s: (s and s.cancel.set()) or "Cancelling…")  # runs outside the queue, at once


def build_demo(editor: ChunkyEditor | None, *, startup_error: str = "") -> gr.Blocks:
    """Lay out the page and wire it to ``editor``. With no editor, the page explains ``startup_error``."""
    with gr.Blocks(title="chunky: ChunkyGAN in the browser", delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# chunky\nReal image inversion via segments ([ChunkyGAN](https://arxiv.org/abs/2208.11727), "
                    "ECCV 2022): every face segment gets its own StyleGAN2 code.")
        if editor is None:
            gr.Markdown("**The model could not be loaded.** What happened and how to fix it:")
            gr.Textbox(startup_error, show_label=False, lines=4, interactive=False, elem_id="startup-error")
            gr.Markdown(views.NO_MODEL_HELP)
            return demo
        gr.Markdown(views.model_line(editor.label, editor.device.type, startup_error), elem_id="model-label")
        directions = views.slider_directions(editor.directions(), MAX_SLIDERS)
        c = {"session": gr.State(None, time_to_live=SESSION_TTL_S)} | input_steps() | inversion_steps(editor) | editing_steps(directions)
        wire(demo, Page(editor, tuple(d.name for d in directions)), c)
    return demo


def input_steps() -> dict:
    """Steps 1 and 2: the photo and its segments."""
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
    with gr.Accordion("2 · Segments: choose what to re-project, sketch corrections, merge or split", open=False):
        c["legend"] = gr.Markdown()
        c["reproject"] = gr.CheckboxGroup(label="Re-project (unchecked segments are taken straight from the photo)",
                                          elem_id="reproject")
        with gr.Row():
            c["sketch"] = gr.ImageEditor(label="Sketch on the crop", type="filepath", layers=False, eraser=False,
                                         brush=gr.Brush(colors=["#ff0000"], color_mode="fixed"))
            with gr.Column():
                c["sketch_segment"] = gr.Dropdown(label="Segment to correct")
                c["add"], c["remove"], c["split"] = map(gr.Button, ("Add painted pixels to it", "Remove painted pixels from it",
                                                                     "Split it by parser label"))
                c["merge_choice"] = gr.CheckboxGroup(label="Segments to merge into one")
                c["merge"], c["reset"] = gr.Button("Merge"), gr.Button("Reset to automatic")
    return c


def inversion_steps(editor: ChunkyEditor) -> dict:
    """Steps 3 and 4: inverting, and the result beside the photo."""
    c, on_cpu = {}, editor.device.type != "cuda"
    gr.Markdown("### 3 · Invert")
    with gr.Row():
        c["space"] = gr.Radio(list(SPACES), value="W+", label="Latent space")
        c["preset"] = gr.Radio(list(PRESET_NAMES), value="preview" if on_cpu else "balanced", label="Quality", elem_id="preset")
        c["baselines_flag"] = gr.Checkbox(value=False, label="Also run global W and W+ (shown side by side)")
    with gr.Accordion("Advanced", open=False), gr.Row():
        c["steps"] = gr.Slider(0, 1000, value=0, step=1, label="Steps per segment (0 = from the preset)", elem_id="steps")
        c["reg"] = gr.Slider(0, 50, value=0, step=1, label="Regulariser (pull toward the mean face; the authors' tool uses 10)")
        c["dilate"] = gr.Slider(0, 32, value=InversionConfig().dilate_px, step=1, label="Segment overlap (px)")
        c["precision"] = gr.Radio(["fp32", "bf16"], value=editor.default_precision or ("bf16" if on_cpu else "fp32"), label="Precision")
    with gr.Row():
        c["invert"], c["cancel"] = gr.Button("Invert", variant="primary", elem_id="invert"), gr.Button("Cancel", elem_id="cancel")
    gr.Markdown("### 4 · Result and edits")
    with gr.Row():
        for name, label in (("photo", "Photo (aligned)"), ("result", "Result")):
            c[name] = gr.Image(label=label, type="numpy", format="png", interactive=False, elem_id=name, height=IMAGE_HEIGHT)
        with gr.Column():
            c["status"] = gr.Markdown("Start with step 1: upload a photo or make a random face.", elem_id="status")
            c["undo"] = gr.Button("Undo", elem_id="undo")
    with gr.Row():
        c["renders"] = gr.Gallery(label="Per-segment renders", columns=6, height=220)
        c["baselines"] = gr.Gallery(label="Global codes vs. per-segment codes (L2 to the photo)", columns=3, height=220, object_fit="contain",
                                    elem_id="baselines")
    c["metrics"] = gr.Dataframe(headers=["segment", "kept", "LPIPS", "L2"], label="Reconstruction", interactive=False)
    return c


def editing_steps(directions) -> dict:
    """Steps 4 and 5: the edit controls and the export."""
    c, sliders = {"targets": gr.CheckboxGroup(label="Apply edits to (none checked = every projected segment)",
                                              elem_id="targets")}, []
    for group in dict.fromkeys(d.group for d in directions):
        with gr.Accordion(f"Directions: {group}", open=not sliders):
            sliders += [gr.Slider(*d.limits, value=0.0, step=0.05 if d.limits[1] <= 1 else 0.1, label=d.name,
                                  elem_id=f"slider-{len(sliders) + i}") for i, d in enumerate(d for d in directions if d.group == group)]
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
    gr.Markdown("### 5 · Export")
    with gr.Row():
        c["tile"] = gr.Slider(64, 1024, value=256, step=64, label="Grid tile size (px)", elem_id="tile")
        c["captions"] = gr.Checkbox(value=False, label="Metric captions in the grid (L2, LPIPS)")
        c["export"] = gr.Button("Export", variant="primary", elem_id="export")
    with gr.Row():
        c["grid"] = gr.Image(label="Comparison grid (what the export holds)", type="numpy", format="png", interactive=False,
                             elem_id="grid")
        c["files"] = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
    return c | {"sliders": sliders}


EVENTS = (  # (button, handler, inputs, extra outputs, api name); "sliders" stands for every slider
    ("load", "load_photo", "upload face_index aligned", "", "load"),
    ("random", "random_face", "seed", "", "random_face"),
    ("webcam_button", "load_photo", "webcam face_index aligned", "", "webcam"),
    ("open", "open_work", "work_file", "", "open"),
    ("invert", "invert", "session space preset steps reg dilate precision reproject baselines_flag", "", "invert"),
    ("freeze", "freeze", "session targets reproject_after reproject_steps sliders", "", "freeze"),
    ("refine", "refine", "session targets sliders", "", "refine"),
    ("variations", "variations", "session targets variation_segment variation_seed sliders", "offers", "variations"),
    ("offers", "choose_variation", "session", "", "choose_variation"),
    ("transfer", "transfer", "session targets reference transfer_segment aligned sliders", "", "transfer"),
    ("tune", "tune", "session targets tune_choice tune_steps sliders", "", "tune"),
    ("undo", "undo", "session", "", "undo"),
    ("export", "export", "session targets tile captions sliders", "files grid", "export"),
)
LONG = ("invert", "freeze", "transfer", "tune")  # JOBS decides when they run; on ZeroGPU Spaces they borrow a GPU


def wire(demo: gr.Blocks, page: Page, c: dict) -> None:
    """Connect every button to its handler; every handler's outputs start with `SCREEN_PARTS` and the sliders."""
    out, sliders = [c[name] for name in SCREEN_PARTS] + c["sliders"], c["sliders"]
    demo.load(page.preset_choices, None, c["preset"], api_name=False)  # the estimates, once measured
    for button, handler, inputs, extra, api_name in EVENTS:
        fn = on_gpu(getattr(page, handler)) if handler in LONG else getattr(page, handler)
        listen = c[button].select if button == "offers" else c[button].click
        listen(fn, [x for name in inputs.split() for x in (sliders if name == "sliders" else [c[name]])],
               out + [c[name] for name in extra.split()], api_name=api_name, concurrency_limit=None if handler in LONG else "default")
    for kind in ("add", "remove", "merge", "split", "reset"):
        c[kind].click(page.change_segments, [c["session"], gr.State(kind), c["sketch"], c["merge_choice"], c["sketch_segment"]],
                      out, api_name=kind)
    c["cancel"].click(page.cancel, [c["session"]], [c["status"]], queue=False, api_name="cancel")
    for i, slider in enumerate(sliders):  # previews and full renders share one lane: a late preview never wins
        slider.input(page.preview, [c["session"], c["targets"], *sliders], [c["result"]], api_name=False,
                     trigger_mode="always_last", show_progress="hidden", concurrency_id="edit", concurrency_limit=1)
        slider.release(page.edit, [c["session"], c["targets"], *sliders], out, api_name="edit" if i == 0 else False,
                       concurrency_id="edit", concurrency_limit=1)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    editor, error = editor_from_environment()
    if editor is not None:
        ESTIMATES.start(editor, {name: editor.preset(name) for name in PRESET_NAMES})
    demo = build_demo(editor, startup_error=error)
    EXPORTS.keep_pruned(60)
    uploads = Path(os.environ.get("GRADIO_TEMP_DIR", Path(tempfile.gettempdir()) / "gradio"))  # Gradio's own folder
    FolderBudget(root=uploads, max_age_s=3600, max_bytes=2 << 30).keep_pruned(60)
    demo.queue(default_concurrency_limit=2, max_size=64)  # short events; long ones wait in JOBS
    demo.launch(max_file_size="64mb")  # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address (Spaces set them)


if __name__ == "__main__":
    main()
