"""The page's widgets, laid out in the order a visitor uses them: photo, segments, inversion, edits, export.

Each function places its widgets inside the current `gr.Blocks` and returns them by name; `app.py` wires the
names to its handlers. What each input accepts is declared here too (`chunky.inputs`): the widgets take their
labels and limits from it, and `app.py`'s handlers name it as their arguments' annotations, so a value an API
client sends is checked against the same label and limits the page shows. No handler and no state lives here.
"""

from __future__ import annotations

import gradio as gr

from app_sketch import sketch_canvas
from chunky import views
from chunky.config import MAX_STEPS, PRESET_NAMES, InversionConfig
from chunky.device import PRECISIONS
from chunky.editor import ChunkyEditor
from chunky.export import TILE_RANGE
from chunky.inputs import Choice, Flag, Names, Number, Points, SketchStrokes, Text, Whole

SPACES = {"W": "w", "W+": "w+", "S": "s"}  # the latent space's label on the page -> its name in the library
IMAGE_HEIGHT = 200  # px: the aligned crop and its segments, in the controls column
LIVE_HEIGHT = 300  # px: the photo and the result, in the column that stays in view
SEED_MAX = 2**31 - 1
# Number boxes carry no precision, minimum or maximum of Gradio's: it would round 2.5 to 2 silently, and refuse
# -1 with a bare "Error" over every output. The inputs below refuse both with a message naming the box.

PHOTO = Text("Photo", optional=True)
FACE = Whole("Face (0 = largest)", 0, 100)
ALIGNED = Flag("Already an aligned face crop")
REFERENCE_ALIGNED = Flag("The reference is an aligned face crop")
SEED = Whole("Seed", 0, SEED_MAX)
POINTS = Points("Points placed (x,y in photo pixels)")
WORK_FILE = Text("work.pt", optional=True)
SEGMENT_CHANGE = Choice("Segment change", ("add", "remove", "merge", "split", "reset"))
SKETCH = SketchStrokes("Sketch on the crop: paint over what to correct")
SKETCH_SEGMENT = Text("Segment to correct")
MERGE = Names("Segments to merge into one")
SPACE = Choice("Latent space", tuple(SPACES))
PRESET = Choice("Quality", PRESET_NAMES)
STEPS = Whole("Steps per segment (0 = from the preset)", 0, MAX_STEPS)
REGULARISER = Number("Regulariser (pull toward the mean face; the authors' tool uses 10)", 0, 50)
OVERLAP = Whole("Segment overlap (px)", 0, 64)
PRECISION = Choice("Precision (auto: the faster one, measured on this machine at start-up)", ("auto", *PRECISIONS))
REPROJECT = Names("Re-project (unchecked segments are taken straight from the photo)")
BASELINES = Flag("Also run global W and W+ (shown side by side)")
TARGETS = Names("Apply edits to (none checked = every projected segment)")
REPROJECT_AFTER = Names("When freezing, re-project these segments against the frozen result")
REPROJECT_STEPS = Whole("Re-projection steps", 1, 300)
VARIATION_SEGMENT = Text("Variations of")
REFERENCE = Text("Reference photo", optional=True)
TRANSFER_SEGMENT = Text("Segment")
TUNE_SEGMENTS = Names("Segments to fine-tune")
TUNE_STEPS = Whole("Steps per segment", 1, 200)
VARIATION = Whole("The variation clicked", 0, 63)
EXAMPLE = Whole("The example clicked", 0, len(views.EXAMPLE_SEEDS))
TILE = Whole("Grid tile size (px)", *TILE_RANGE)
CAPTIONS = Flag("Metric captions in the grid (L2, LPIPS)")
SLIDE = Flag("16:9 slide")
HIGH_RES = Flag("Full resolution: render the codes again at the face's size in the photo for the paste-back and grid")


def page_widgets(editor: ChunkyEditor, directions) -> dict:
    """Every widget of the page: the five steps' controls in one column, `live_panel` in another."""
    c = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=340, elem_id="controls"):
            c |= input_steps(editor.work_size(), views.examples(editor))
            c |= inversion_steps(editor)
            c |= editing_steps(directions, editor)
        with gr.Column(scale=2, min_width=300, elem_id="live"):
            c |= live_panel()
    return c


def input_steps(work_size: int, examples: list) -> dict:
    """Steps 1 and 2: the photo (or one of the ``examples``, (image, caption) pairs) and its segments (sketched on
    the ``work_size`` px crop)."""
    c = {}
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("### 1 · Photo")
            c["upload"] = gr.File(
                label="Photo (PNG, JPEG, WebP, ...)", file_types=["image"], type="filepath", elem_id="upload"
            )
            with gr.Row():
                c["face_index"] = gr.Number(value=0, label=FACE.label)
                c["aligned"] = gr.Checkbox(value=False, label=ALIGNED.label)
            c["load"] = gr.Button("Load photo", variant="primary", elem_id="load")
            c["examples"] = gr.Gallery(
                examples,
                label="…or start from an example (click one)",
                columns=len(examples),
                height=120,
                allow_preview=False,
                object_fit="cover",
                elem_id="examples",
            )
            with gr.Row():
                c["seed"] = gr.Number(value=0, label=SEED.label, elem_id="seed")
                c["random"] = gr.Button("Random face", elem_id="random")
            with gr.Accordion("…or take a photo with the webcam", open=False):
                c["webcam"] = gr.Image(sources=["webcam"], type="filepath", label="Webcam", format="png")
                c["webcam_button"] = gr.Button("Use this photo")
            with gr.Accordion("…or place the face by hand (no face found, or the wrong one)", open=False):
                c["show_photo"] = gr.Button("Show the photo to place five points", elem_id="show-photo")
                c["placing"] = gr.Image(
                    label="Click the eyes, the nose tip and the mouth corners",
                    type="numpy",
                    interactive=False,
                    elem_id="placing",
                )
                c["points"] = gr.Textbox(label=POINTS.label, elem_id="points")
                with gr.Row():
                    c["clear_points"] = gr.Button("Clear", elem_id="clear-points")
                    c["place"] = gr.Button("Align to these points", elem_id="place")
            with gr.Accordion("…or continue from an export (work.pt)", open=False):
                c["work_file"] = gr.File(label="work.pt", file_types=[".pt"], type="filepath", elem_id="work-file")
                c["open"] = gr.Button("Open")
        for name, label in (("crop", "Aligned face"), ("overlay", "Segments")):
            c[name] = gr.Image(
                label=label, type="numpy", format="png", interactive=False, elem_id=name, height=IMAGE_HEIGHT
            )
    with gr.Accordion("2 · Segments: choose what to re-project, sketch corrections, merge or split", open=False):
        c["legend"] = gr.Markdown()
        c["reproject"] = gr.CheckboxGroup(label=REPROJECT.label, elem_id="reproject")
        with gr.Row():
            c["sketch"] = sketch_canvas(SKETCH.label, work_size, elem_id="sketch")
            with gr.Column():
                c["sketch_segment"] = gr.Dropdown(label=SKETCH_SEGMENT.label, elem_id="sketch-segment")
                c["add"] = gr.Button("Add painted pixels to it", elem_id="add")
                c["remove"] = gr.Button("Remove painted pixels from it", elem_id="remove")
                c["split"] = gr.Button("Split it by parser label")
                c["merge_choice"] = gr.CheckboxGroup(label=MERGE.label)
                c["merge"] = gr.Button("Merge")
                c["reset"] = gr.Button("Reset to automatic")
    return c


def inversion_steps(editor: ChunkyEditor) -> dict:
    """Step 3: inverting (the result is shown by `live_panel`), with the inversion's details."""
    c, on_cpu = {}, editor.device.type != "cuda"
    gr.Markdown("### 3 · Invert")
    with gr.Row():
        c["space"] = gr.Radio(list(SPACE.options), value="W+", label=SPACE.label)
        c["preset"] = gr.Radio(
            list(PRESET.options), value="preview" if on_cpu else "balanced", label=PRESET.label, elem_id="preset"
        )
        c["baselines_flag"] = gr.Checkbox(value=False, label=BASELINES.label)
    with gr.Accordion("Advanced", open=False), gr.Row():
        c["steps"] = gr.Slider(STEPS.low, STEPS.high, value=0, step=1, label=STEPS.label, elem_id="steps")
        c["reg"] = gr.Slider(REGULARISER.low, REGULARISER.high, value=0, step=1, label=REGULARISER.label)
        dilate_px = InversionConfig().dilate_px
        c["dilate"] = gr.Slider(OVERLAP.low, OVERLAP.high, value=dilate_px, step=1, label=OVERLAP.label)
        c["precision"] = gr.Radio(list(PRECISION.options), value="auto", label=PRECISION.label, elem_id="precision")
    c["invert"] = gr.Button("Invert", variant="primary", elem_id="invert")
    with gr.Accordion("Inversion details: per-segment renders, global codes, metrics", open=False):
        c["renders"] = gr.Gallery(label="Per-segment renders", columns=4, height="auto", elem_id="renders")
        c["baselines"] = gr.Gallery(
            label="Global codes vs. per-segment codes (L2 to the photo)",
            columns=3,
            height="auto",
            object_fit="contain",
            elem_id="baselines",
        )
        c["metrics"] = gr.Dataframe(
            headers=["segment", "kept", "LPIPS", "L2"], label="Reconstruction", interactive=False
        )
    return c


def live_panel() -> dict:
    """What stays in view beside every control (a sticky column; on a phone, a strip at the top): the result
    beside the photo, the status line, Undo and Cancel."""
    c = {}
    with gr.Row(elem_id="live-images"):
        for name, label in (("photo", "Photo (aligned)"), ("result", "Result")):
            c[name] = gr.Image(
                label=label, type="numpy", format="png", interactive=False, elem_id=name, height=LIVE_HEIGHT
            )
    c["status"] = gr.Markdown("Start with step 1: upload a photo or make a random face.", elem_id="status")
    with gr.Row(elem_id="live-buttons"):
        c["undo"] = gr.Button("Undo", elem_id="undo")
        c["cancel"] = gr.Button("Cancel", elem_id="cancel")
    return c


def editing_steps(directions, editor: ChunkyEditor) -> dict:
    """Steps 4 and 5: the edit controls and the export."""
    gr.Markdown("### 4 · Edit")
    c = {"targets": gr.CheckboxGroup(label=TARGETS.label, elem_id="targets")}
    sliders = []
    for group in dict.fromkeys(d.group for d in directions):
        with gr.Accordion(f"Directions: {group}", open=not sliders):
            sliders += [
                gr.Slider(
                    *d.limits,
                    value=0.0,
                    step=0.05 if d.limits[1] <= 1 else 0.1,
                    label=d.name,
                    elem_id=f"slider-{len(sliders) + i}",
                )
                for i, d in enumerate(d for d in directions if d.group == group)
            ]
    with gr.Row():
        c["refine"] = gr.Button("Refine boundaries (level set)", elem_id="refine")
        c["freeze"] = gr.Button("Freeze (edit on top of this)", elem_id="freeze")
        c["reproject_after"] = gr.CheckboxGroup(label=REPROJECT_AFTER.label, elem_id="reproject-after", scale=2)
        c["reproject_steps"] = gr.Slider(
            REPROJECT_STEPS.low, REPROJECT_STEPS.high, value=30, step=1, label=REPROJECT_STEPS.label
        )
    with gr.Accordion("Variations of one segment", open=False):
        with gr.Row():
            c["variation_segment"] = gr.Dropdown(label=VARIATION_SEGMENT.label)
            c["variation_seed"] = gr.Number(value=0, label=SEED.label)
            c["variations"] = gr.Button("Show variations", elem_id="variations")
        c["offers"] = gr.Gallery(
            label="Variations (click one to use it; click another to compare)",
            columns=4,
            height="auto",
            elem_id="offers",
        )
    with gr.Accordion("Take a segment from a reference photo", open=False), gr.Row():
        c["reference"] = gr.File(label=REFERENCE.label, file_types=["image"], type="filepath", elem_id="reference")
        segments = ["hair", "eyes", "brows", "nose", "mouth", "skin"]
        c["transfer_segment"] = gr.Dropdown(segments, value="hair", label=TRANSFER_SEGMENT.label)
        c["reference_aligned"] = gr.Checkbox(value=False, label=REFERENCE_ALIGNED.label, elem_id="reference-aligned")
        c["transfer"] = gr.Button("Transfer", elem_id="transfer")
    with (
        gr.Accordion("Fine-tune the generator for some segments (pivotal tuning; slow on a CPU)", open=False),
        gr.Row(),
    ):
        c["tune_choice"] = gr.CheckboxGroup(label=TUNE_SEGMENTS.label, elem_id="tune-segments", scale=3)
        c["tune_steps"] = gr.Slider(TUNE_STEPS.low, TUNE_STEPS.high, value=40, step=1, label=TUNE_STEPS.label)
        c["tune"] = gr.Button("Fine-tune", elem_id="tune")
    gr.Markdown("### 5 · Export")
    with gr.Row():
        c["tile"] = gr.Slider(TILE.low, TILE.high, value=256, step=64, label=TILE.label, elem_id="tile")
        c["captions"] = gr.Checkbox(value=False, label=CAPTIONS.label, elem_id="captions")
        c["slide"] = gr.Checkbox(value=False, label=SLIDE.label)
        c["high_res"] = gr.Checkbox(
            value=False,
            label=HIGH_RES.label,
            info=f"up to {editor.generator.size} px (the page works at {editor.work_size()} px); slower",
            elem_id="high-res",
        )
        c["export"] = gr.Button("Export", variant="primary", elem_id="export")
    c["grid"] = gr.Image(  # the whole column's width, to be read on the page
        label="Comparison grid (what the export holds)",
        type="numpy",
        format="png",
        interactive=False,
        elem_id="grid",
    )
    c["files"] = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
    return c | {"sliders": sliders}
