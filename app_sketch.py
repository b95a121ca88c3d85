"""The page's sketch canvas: the aligned crop with its segment boundaries, a brush, and strokes a visitor can undo.

A `gr.HTML` with its own script, not Gradio's `gr.ImageEditor`: the editor, given a new picture by an event that
also read its strokes, stopped taking strokes or showing pictures every other time (Gradio 6.31: "processing"
for ever). Here the server sets the picture (the ``picture`` property, a PNG data URL, with ``value=""``)
and the page's script only draws; nothing is uploaded until an event reads the canvas. Its property names
appear in no quotes in the script (see there).

The canvas's value is what was painted since the picture was set: "" (nothing) or a PNG data URL, [size, size]
RGBA at the crop's own pixels, painted pixels opaque red (`chunky.inputs.SketchStrokes` reads it).
"""

from __future__ import annotations

import base64
import io

import gradio as gr
import numpy as np
from PIL import Image

TEMPLATE = """
<div class="sketch-canvas">
  <div class="sketch-label">${label}</div>
  <div class="sketch-stage">
    <img class="sketch-picture" src="${picture}" alt="The aligned crop with its segment boundaries">
    <canvas class="sketch-ink" width="${pixels}" height="${pixels}"></canvas>
  </div>
  <div class="sketch-tools">
    <label>Brush <input class="sketch-brush" type="range" min="1" max="${max_brush}" value="${brush}"></label>
    <span class="sketch-brush-size">${brush} px</span>
    <button type="button" class="sketch-undo">Undo stroke</button>
    <button type="button" class="sketch-clear">Clear strokes</button>
  </div>
</div>
"""

STYLE = """
.sketch-label { font-size: var(--block-label-text-size); color: var(--block-label-text-color); margin-bottom: 4px; }
.sketch-stage { position: relative; width: 100%; max-width: 420px; aspect-ratio: 1; }
.sketch-stage img, .sketch-stage canvas { position: absolute; inset: 0; width: 100%; height: 100%;
  image-rendering: pixelated; }
.sketch-stage canvas { touch-action: none; cursor: crosshair; opacity: 0.6; }
.sketch-tools { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-top: 6px; }
.sketch-tools button { padding: 2px 10px; border: 1px solid var(--border-color-primary);
  border-radius: var(--button-small-radius); background: var(--button-secondary-background-fill); }
"""

# Strokes are kept as point lists (undo drops the last) and drawn at the crop's own pixels; after each stroke the
# canvas's value becomes its PNG. A new picture from the server clears them.
SCRIPT = """
let strokes = [];
let current = null;
let chosenBrush = null; // kept when a new picture redraws the template
const ink = () => element.querySelector('canvas.sketch-ink');
const brush = () => element.querySelector('input.sketch-brush');

function draw() {
  const canvas = ink();
  const pen = canvas.getContext('2d');
  pen.clearRect(0, 0, canvas.width, canvas.height);
  pen.strokeStyle = '#ff0000';
  pen.lineCap = 'round';
  pen.lineJoin = 'round';
  for (const stroke of strokes) {
    pen.lineWidth = stroke.size;
    pen.beginPath();
    stroke.points.forEach(([x, y], i) => (i ? pen.lineTo(x, y) : pen.moveTo(x, y)));
    if (stroke.points.length === 1) pen.lineTo(stroke.points[0][0] + 0.01, stroke.points[0][1]);
    pen.stroke();
  }
}

function publish() {
  props.value = strokes.length ? ink().toDataURL('image/png') : '';
}

function point(event) {
  const canvas = ink();
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * canvas.width / box.width;
  const y = (event.clientY - box.top) * canvas.height / box.height;
  return [x, y];
}

element.addEventListener('pointerdown', (event) => {
  if (current || !event.target.matches('canvas.sketch-ink')) return; // one stroke at a time (one finger)
  event.preventDefault();
  event.target.setPointerCapture(event.pointerId);
  current = { size: Number(brush().value), points: [point(event)] };
  strokes.push(current);
  draw();
});
element.addEventListener('pointermove', (event) => {
  if (!current) return;
  current.points.push(point(event));
  draw();
});
const finish = () => {
  if (!current) return;
  current = null;
  publish();
};
element.addEventListener('pointerup', finish);
element.addEventListener('pointercancel', finish);
element.addEventListener('input', (event) => {
  if (event.target.matches('input.sketch-brush')) {
    chosenBrush = event.target.value;
    element.querySelector('.sketch-brush-size').textContent = `${chosenBrush} px`;
  }
});
element.addEventListener('click', (event) => {
  if (event.target.matches('button.sketch-undo')) strokes.pop();
  else if (event.target.matches('button.sketch-clear')) strokes = [];
  else return;
  draw();
  publish();
});
// A new picture from the server comes with an empty value: the strokes go. (Only real attributes of the component
// may be named in quotes here: Gradio takes any other quoted name for a custom event of the component.)
watch('value', () => {
  if (props.value === '' && strokes.length) {
    strokes = [];
    draw();
  }
});
// A new picture redraws the template, the brush slider with it: the visitor's brush size is put back.
new MutationObserver(() => {
  const slider = brush();
  if (chosenBrush !== null && slider && slider.value !== chosenBrush) {
    slider.value = chosenBrush;
    element.querySelector('.sketch-brush-size').textContent = `${chosenBrush} px`;
  }
}).observe(element, { childList: true, subtree: true });
"""


def brush_size(work_size: int) -> int:
    """The brush's default diameter in crop pixels: about 3% of the face, a stroke the width of a lip."""
    return max(1, round(0.03 * work_size))


def sketch_canvas(label: str, work_size: int, elem_id: str) -> gr.HTML:
    """The canvas (placed in the current `gr.Blocks`), ``work_size`` px, blank until `show_picture` sets it."""
    return gr.HTML(
        "",
        html_template=TEMPLATE,
        css_template=STYLE,
        js_on_load=SCRIPT,
        label=label,
        elem_id=elem_id,
        **canvas_properties(np.full((work_size, work_size, 3), 255, np.uint8)),
    )


def show_picture(image: np.ndarray) -> dict:
    """The update that shows ``image`` ([size, size, 3] uint8: the crop with its boundaries) and clears the strokes."""
    return gr.update(value="", **canvas_properties(image))


def canvas_properties(image: np.ndarray) -> dict:
    """The template's properties for a canvas showing ``image`` ([size, size, 3] uint8), all of them: a component
    first shown after an update (inside a closed accordion) gets only the properties that update holds."""
    size = image.shape[0]
    return {"picture": picture_url(image), "pixels": size, "brush": brush_size(size), "max_brush": max(2, size // 4)}


def picture_url(image: np.ndarray) -> str:
    """``image`` ([H, W, 3] or [H, W, 4] uint8) as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
