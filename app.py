"""chunky in the browser: `python app.py` (CHUNKY_MODEL=small: the bundled small face model, no downloads).

Widgets and wiring only: a user's work is one `chunky.session.Session` in `gr.State`; after every handler the
page is redrawn from it (`screen`), and a refused action shows its message without touching the outputs.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

import app_actions
import app_layout as ui
from app_actions import (
    ESTIMATES,
    SCREEN_PARTS,
    action,
    park_when_the_tab_closes,
    private_uploads,
    restore_parked,
    upload_quota_middleware,
    visitor,
)
from chunky import views
from chunky.config import PRESET_NAMES
from chunky.directions import Direction
from chunky.editor import ChunkyEditor, editor_from_environment
from chunky.errors import ChunkyError, InvalidInputError
from chunky.export import FolderBudget, export_session
from chunky.images import read_image
from chunky.inputs import slider_values
from chunky.session import Session
from chunky.workfile import read_work

log = logging.getLogger("chunky.app")

try:  # Hugging Face ZeroGPU Spaces: borrow a GPU for the long calls; elsewhere a no-op
    from spaces import GPU

    on_gpu = GPU(duration=300)
except ImportError:
    on_gpu = lambda fn: fn  # noqa: E731

MAX_SLIDERS = 64  # direction sliders shown (user folders can hold many files)
MAX_SECONDS = float(os.environ.get("CHUNKY_MAX_SECONDS", "900"))  # one request's time limit, all its runs together
EXPORTS = FolderBudget(max_age_s=3600, max_bytes=2 << 30)  # private to this process; pruned at each export
MAX_SESSIONS = int(os.environ.get("CHUNKY_MAX_SESSIONS", "2000"))  # Gradio's page state, ~0.1 MB each: LRU beyond
SESSION_TTL_S = 2 * 3600  # a session's state is dropped this long after its last change (API clients included)


class Page:
    """The handlers, wrapped by `action`; ``editor``: the shared models, ``directions``: one per slider."""

    def __init__(self, editor: ChunkyEditor, directions: Sequence[Direction]):
        self.editor = editor
        self.names = tuple(d.name for d in directions)
        self.limits = tuple(d.limits for d in directions)

    @staticmethod
    def bar(s: Session, progress: gr.Progress, label: str):
        """The session's progress callback for one request (stops on Cancel or after MAX_SECONDS), shown as a bar."""
        return s.progress(
            lambda step, total, text: progress((step, total), desc=f"{label}: {text}"), seconds=MAX_SECONDS
        )

    @action(needs_session=False)
    def load_photo(self, path: ui.PHOTO, face_index: ui.FACE, aligned_flag: ui.ALIGNED):
        if not path:
            raise InvalidInputError("Choose a photo (upload or webcam) first.")
        return self.start(read_image(Path(path), name=Path(path).name), face_index, aligned_flag, Path(path).name)

    @action(needs_session=False)
    def place(self, path: ui.PHOTO, points: ui.POINTS):
        if not path:
            raise InvalidInputError("Choose a photo (upload) first.")
        photo = read_image(Path(path), name=Path(path).name)
        return self.start(photo, 0, False, Path(path).name, landmarks=points)

    def show_placing(self, path, points_text, face_index):
        """The photo for placing points, with the points so far or, when none, the detector's: (image, points, hint)."""
        return self.placing(path, points_text, None, face_index)

    def add_point(self, path, points_text, event: gr.SelectData):
        """A click on the photo places the next point, or moves the nearest of five: (image, points, hint)."""
        return self.placing(path, points_text, event.index)

    def placing(self, path, points_text, clicked, propose_for=None):
        try:
            if not isinstance(path, str) or not path:
                raise InvalidInputError("Choose a photo (upload) first, then place the points on it.")
            photo = read_image(Path(path), name=Path(path).name)
            face = None if propose_for is None else ui.FACE.check(propose_for)
            detector = None if face is None else self.editor.detector()
            return views.placing_screen(photo, points_text, clicked, detector, face)
        except (ChunkyError, ValueError, TypeError, IndexError) as error:
            message = str(error) if isinstance(error, ChunkyError) else "Choose a photo (upload), then click on it."
            return gr.update(), gr.update(), f"⚠ {html.escape(message)}"

    @action(needs_session=False)
    def random_face(self, seed: ui.SEED):
        face = self.editor.random_face(seed, resolution=self.editor.work_size())
        return self.start(face, 0, True, f"Random face #{seed}")

    @action(needs_session=False)
    def example(self, event: gr.SelectData):
        index = ui.EXAMPLE.check(event.index)
        if index == 0:  # the real photo: aligned like any upload
            return self.start(read_image(views.EXAMPLE_PHOTO, name="astronaut.jpg"), 0, False, "The astronaut")
        seed = views.EXAMPLE_SEEDS[index - 1]
        return self.start(self.editor.random_face(seed, resolution=self.editor.work_size()), 0, True, f"Face #{seed}")

    @action(needs_session=False)
    def open_work(self, path: ui.WORK_FILE):
        if not path:
            raise InvalidInputError("Choose a work.pt file from an earlier export first.")
        return read_work(self.editor, path), f"Opened {html.escape(Path(path).name)}: continue where you left off."

    def start(self, photo, face_index, aligned_flag, source, landmarks=None):
        skip = True if aligned_flag else None
        s = Session.start(self.editor, photo, face_index=face_index, skip_alignment=skip, landmarks=landmarks)
        a = s.aligned
        found = "used as an aligned crop" if a.skipped else f"{a.face_count} face(s) found, using face {a.face_index}"
        return (
            s,
            f"{html.escape(source)}: {found}. {html.escape(a.note)} Next: check the segments (2), then Invert (3).",
        )

    @action
    def change_segments(
        self, s, kind: ui.SEGMENT_CHANGE, sketched: ui.SKETCH, names: ui.MERGE, name: ui.SKETCH_SEGMENT
    ):
        changes = {
            "add": lambda: s.sketch(name, sketched),
            "remove": lambda: s.sketch(name, sketched, erase=True),
            "merge": lambda: s.merge(names),
            "split": lambda: s.split(name),
        }
        changes.get(kind, s.reset_segments)()
        carried = " Codes were carried over from the parent segments; Invert again for a fresh fit."
        return s, f"Segments: {kind} done.{carried if s.state.result else ''}"

    @action(long=True)
    def invert(
        self,
        s,
        space: ui.SPACE,
        preset: ui.PRESET,
        steps: ui.STEPS,
        reg: ui.REGULARISER,
        dilate: ui.OVERLAP,
        precision: ui.PRECISION,
        chosen: ui.REPROJECT,
        with_baselines: ui.BASELINES,
        progress=gr.Progress(),
    ):
        space = ui.SPACES[space]
        chosen_precision = app_actions.precision_setting(precision, self.editor)
        config = self.editor.preset(preset, space=space, reg_weight=reg, dilate_px=dilate, **chosen_precision)
        config = config.replace(steps=steps) if steps else config
        result = s.invert(
            config,
            keep=[n for n in s.names if n not in chosen],
            baselines=with_baselines,
            progress=self.bar(s, progress, "inverting"),
        )
        if result.cancelled:
            return s, f"Stopped after {result.steps_run} steps (Cancel, or the {MAX_SECONDS:.0f} s limit): its best."
        return s, f"Done: {result.steps_run} steps, {result.passes} generator passes. Next: a slider (4), Export (5)."

    @action(sliders=True)
    def edit(self, s, targets: ui.TARGETS):
        figures = s.preservation()
        if figures is None:
            return s, "No edit."
        message = f"Edited ({html.escape(figures.line())})."
        if "global W+" in dict(s.state.baselines):  # the comparison with one code, when it was inverted
            _, one_code = s.global_preservation()
            message += f" The same edit of one W+ code: {one_code.outside_changed_share:.1%} changed outside."
        return s, message + " Freeze to build on it, or Export (step 5)."

    def preview(self, s, targets, *values):
        """While a slider moves: a quarter-resolution render of the edit; the session is not changed."""
        try:
            image = s.preview(slider_values(self.names, values, self.limits), targets or ())
            return gr.update() if image is None else image
        except (AttributeError, ChunkyError, ValueError, TypeError):  # no session yet, or a value being typed
            return gr.update()

    @action(sliders=True, long=True)
    def freeze(
        self,
        s,
        targets: ui.TARGETS,
        reproject_names: ui.REPROJECT_AFTER,
        steps: ui.REPROJECT_STEPS,
        progress=gr.Progress(),
    ):
        s.freeze(reproject_names, steps=steps, progress=self.bar(s, progress, "re-projecting"))
        return s, "Frozen: the next edit builds on this one (Undo goes back). Sliders are back at 0."

    @action(sliders=True)
    def refine(self, s, targets: ui.TARGETS):
        s.refine()
        return s, "Boundaries refined (level set). Undo goes back."

    @action(extras=1, sliders=True)
    def variations(self, s, targets: ui.TARGETS, segment: ui.VARIATION_SEGMENT, seed: ui.SEED):
        offers = s.variations(segment, seed=seed)
        return s, f"{len(offers)} variations of {html.escape(str(segment))}: click one to use it.", offers

    @action
    def choose_variation(self, s, event: gr.SelectData):
        s.choose_variation(ui.VARIATION.check(event.index))
        return s, "Variation adopted; the slider edit stays on top. Click another to compare; Undo goes back."

    @action(sliders=True, long=True)
    def transfer(
        self,
        s,
        targets: ui.TARGETS,
        path: ui.REFERENCE,
        segment: ui.TRANSFER_SEGMENT,
        aligned_flag: ui.REFERENCE_ALIGNED,
        progress=gr.Progress(),
    ):
        if not path:
            raise InvalidInputError("Choose a reference photo first.")
        photo = read_image(Path(path), name=Path(path).name)
        s.transfer(
            photo,
            segment,
            skip_alignment=True if aligned_flag else None,
            progress=self.bar(s, progress, "inverting the reference"),
        )
        return s, f"Took the {html.escape(str(segment))} from the reference photo. Undo goes back."

    @action(sliders=True, long=True)
    def tune(self, s, targets: ui.TARGETS, segments: ui.TUNE_SEGMENTS, steps: ui.TUNE_STEPS, progress=gr.Progress()):
        seconds = s.tune(segments, steps=steps, progress=self.bar(s, progress, "fine-tuning"))
        return s, f"Fine-tuned {html.escape(', '.join(dict.fromkeys(segments)))} in {seconds:.0f} s. Undo goes back."

    @action
    def undo(self, s):
        undone = s.undo()
        return s, f"Undid “{html.escape(undone)}”."

    @action(extras=2, sliders=True)
    def export(
        self,
        s,
        targets: ui.TARGETS,
        tile: ui.TILE,
        captions: ui.CAPTIONS,
        slide: ui.SLIDE,
        full: ui.HIGH_RES,
        request: gr.Request,
    ):
        client = visitor(request)
        app_actions.EXPORT_QUOTA.check(client)
        done = export_session(
            s,
            EXPORTS.new(),
            tile=tile,
            captions=captions,
            slide=slide,
            high_resolution=full,
            perceptual=s.editor.perceptual("lpips-alex") if captions else None,
            identity=s.editor.identity() if captions else None,
        )
        app_actions.EXPORT_QUOTA.charge(client, sum(f.stat().st_size for f in done.files))
        rendered = ""
        if full and done.size > s.size:
            rendered = f" The result was rendered at {done.size} px in {done.render_seconds:.1f} s."
        elif full:
            rendered = f" The face is no larger than {s.size} px in the photo: the shown picture is its full size."
        message = f"Exported exactly what is shown: download the files below.{rendered}"
        return s, message, [str(f) for f in done.files], done.grid

    cancel = staticmethod(lambda s: (s and s.cancel.set()) or "Cancelling…")  # runs outside the queue, at once


def build_demo(editor: ChunkyEditor | None, *, startup_error: str = "") -> gr.Blocks:
    """Lay out the page and wire it to ``editor``. With no editor, the page explains ``startup_error``."""
    with gr.Blocks(title="chunky: ChunkyGAN in the browser", delete_cache=(3600, 86400)) as demo:
        gr.Markdown(
            "# chunky\nReal image inversion via segments ([ChunkyGAN](https://arxiv.org/abs/2208.11727), "
            "ECCV 2022): every face segment gets its own StyleGAN2 code."
        )
        if editor is None:
            gr.Markdown("**The model could not be loaded.** What happened and how to fix it:")
            gr.Textbox(startup_error, show_label=False, lines=4, interactive=False, elem_id="startup-error")
            gr.Markdown(views.NO_MODEL_HELP)
            return demo
        gr.Markdown(views.model_line(editor.label, editor.device.type, startup_error), elem_id="model-label")
        directions = views.slider_directions(editor.directions(), MAX_SLIDERS)
        c = {"session": gr.State(None, time_to_live=SESSION_TTL_S), "ticket": gr.State(None)}
        c["token"] = gr.BrowserState(None, storage_key="chunky-work")  # this browser's token: a reload restores
        c |= ui.page_widgets(editor, directions)
        wire(demo, Page(editor, directions), c)
    return demo


EVENTS = (  # (button, handler, inputs, extra outputs, api name); "sliders" stands for every slider
    ("load", "load_photo", "upload face_index aligned", "", "load"),
    ("random", "random_face", "seed", "", "random_face"),
    ("webcam_button", "load_photo", "webcam face_index aligned", "", "webcam"),
    ("open", "open_work", "work_file", "", "open"),
    ("examples", "example", "", "", False),
    ("place", "place", "upload points", "", "place"),
    ("invert", "invert", "session space preset steps reg dilate precision reproject baselines_flag", "", "invert"),
    ("freeze", "freeze", "session targets reproject_after reproject_steps sliders", "", "freeze"),
    ("refine", "refine", "session targets sliders", "", "refine"),
    ("variations", "variations", "session targets variation_segment variation_seed sliders", "offers", "variations"),
    ("offers", "choose_variation", "session", "", "choose_variation"),
    ("transfer", "transfer", "session targets reference transfer_segment reference_aligned sliders", "", "transfer"),
    ("tune", "tune", "session targets tune_choice tune_steps sliders", "", "tune"),
    ("undo", "undo", "session", "", "undo"),
    ("export", "export", "session targets tile captions slide high_res sliders", "files grid", "export"),
)
LONG = ("invert", "freeze", "transfer", "tune")  # JOBS decides when they run; on ZeroGPU Spaces they borrow a GPU


def wire(demo: gr.Blocks, page: Page, c: dict) -> None:
    """Connect every button to its handler; every handler's outputs start with `SCREEN_PARTS` and the sliders."""
    out, sliders = [c[name] for name in SCREEN_PARTS] + c["sliders"], c["sliders"]
    demo.load(app_actions.measured_choices, None, [c["preset"], c["precision"]], api_name=False)  # once measured
    for button, handler, inputs, extra, api_name in EVENTS:
        fn = on_gpu(getattr(page, handler)) if handler in LONG else getattr(page, handler)
        listen = c[button].select if button in ("offers", "examples") else c[button].click
        listen(
            fn,
            [x for name in inputs.split() for x in (sliders if name == "sliders" else [c[name]])],
            out + [c[name] for name in extra.split()],
            api_name=api_name,
            concurrency_limit=None if handler in LONG else "default",
            show_progress_on=[c["result"]],  # one progress display per job, where the result appears
        )
    for kind in ("add", "remove", "merge", "split", "reset"):
        segment_inputs = [c["session"], gr.State(kind), c["sketch"], c["merge_choice"], c["sketch_segment"]]
        c[kind].click(page.change_segments, segment_inputs, out, api_name=kind, show_progress_on=[c["result"]])
    c["cancel"].click(page.cancel, [c["session"]], [c["status"]], queue=False, api_name="cancel")
    load_inputs = [c["upload"], c["face_index"], c["aligned"]]  # a chosen photo loads at once (Load: again)
    c["upload"].upload(page.load_photo, load_inputs, out, api_name=False, show_progress_on=[c["result"]])
    placing = [c["placing"], c["points"], c["status"]]
    c["show_photo"].click(page.show_placing, [c["upload"], c["points"], c["face_index"]], placing, api_name=False)
    c["placing"].select(page.add_point, [c["upload"], c["points"]], placing, api_name=False)
    c["clear_points"].click(page.placing, [c["upload"], gr.State(""), gr.State(None)], placing, api_name=False)
    edit_lane = {"concurrency_id": "edit", "concurrency_limit": 1}  # previews and renders: a late preview never wins
    c["targets"].input(page.edit, [c["session"], c["targets"], *sliders], out, api_name=False, **edit_lane)
    demo.load(None, None, None, js=views.PAGE_SCRIPT, api_name=False)
    demo.load(restore_parked(page.names), [c["token"]], out + [c["ticket"], c["token"]], api_name=False)
    demo.unload(park_when_the_tab_closes(demo))  # cancels the tab's job and parks its work for a reload
    for i, slider in enumerate(sliders):
        slider.input(
            page.preview,
            [c["session"], c["targets"], *sliders],
            [c["result"]],
            api_name=False,
            trigger_mode="always_last",
            show_progress="hidden",
            **edit_lane,
        )
        slider.release(
            page.edit,
            [c["session"], c["targets"], *sliders],
            out,
            api_name="edit" if i == 0 else False,
            **edit_lane,
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    editor, error = editor_from_environment()
    if editor is not None:
        ESTIMATES.start(editor, {name: editor.preset(name) for name in PRESET_NAMES})
    private_uploads().keep_pruned(60)
    demo = build_demo(editor, startup_error=error)  # after private_uploads: Gradio reads its folder here
    EXPORTS.keep_pruned(60)
    demo.queue(default_concurrency_limit=2, max_size=64)  # short events; long ones wait in JOBS
    demo.launch(  # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address (Spaces set them)
        max_file_size="64mb",
        state_session_capacity=MAX_SESSIONS,
        app_kwargs=upload_quota_middleware(),
        ssr_mode=False,  # no Node proxy in front: the visitor's address is the one the Space's proxy reports
    )


if __name__ == "__main__":
    main()
