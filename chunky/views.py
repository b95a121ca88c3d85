"""What a page shows of a session besides its images: the segment legend, the render gallery, the
reconstruction table and the baseline tiles. Plain data (strings, lists, uint8 arrays); no UI library.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from chunky.align import detect_faces
from chunky.images import read_image, tensor_to_uint8, uint8_to_tensor
from chunky.metrics import l2_distance
from chunky.segmentation import segment_colour

NO_MODEL_HELP = (
    "To try the page without any download, start it with the bundled small face model: "
    "`CHUNKY_MODEL=small python app.py` (64 px faces, offline)."
)


EXAMPLE_PHOTO = Path(__file__).resolve().parent.parent / "examples" / "astronaut.jpg"  # NASA, public domain
EXAMPLE_SEEDS = (1, 5, 6, 11)  # generated faces to start from (chosen by looking at the small model's)


def examples(editor) -> list[tuple[np.ndarray, str]]:
    """(image, caption) of each example to start from: the astronaut photo (a real photo, aligned on load), then
    a generated face per `EXAMPLE_SEEDS` at the work size (already aligned)."""
    photo = read_image(EXAMPLE_PHOTO, name=EXAMPLE_PHOTO.name)
    faces = [editor.random_face(seed, resolution=editor.work_size()) for seed in EXAMPLE_SEEDS]
    return [(photo, "Astronaut Eileen Collins (NASA, public domain)")] + [
        (face, f"Generated face #{seed}") for seed, face in zip(EXAMPLE_SEEDS, faces)
    ]


def model_line(label: str, device: str, notice: str = "") -> str:
    """The page's Markdown line saying which model runs where, with ``notice`` (why another model is not
    used) below it; both are escaped, so nothing in them is read as Markdown or HTML."""
    line = f"Model: **{html.escape(label)}** · device: {html.escape(device)}"
    return line if not notice else f"{line}\n\n> {html.escape(notice)}"


def legend(session) -> str:
    """HTML: a coloured square, the name and the share of the crop for each segment."""
    segmentation = session.state.segmentation
    return " · ".join(
        f"<span style='color:rgb{segment_colour(n)}'>■</span> {html.escape(n)} ({100 * float(a):.0f}%)"
        for n, a in zip(segmentation.names, segmentation.area())
    )


def renders(session) -> list[tuple[np.ndarray, str]]:
    """(render [S, S, 3] uint8, segment name) for each projected segment; empty before inverting."""
    result = session.state.result
    return [] if result is None else [(tensor_to_uint8(result.renders[k]), session.names[k]) for k in result.projected]


def metrics(session) -> list[list]:
    """Rows [segment, kept, LPIPS, L2] of the reconstruction, measured inside each segment's loss region."""
    result = session.state.result
    if result is None:
        return []
    losses = result.segment_losses
    return [
        [name, k in result.keep, round(float(losses["lpips"][k]), 4), round(float(losses["l2"][k]), 4)]
        for k, name in enumerate(session.names)
    ]


def baselines(session) -> list[tuple[np.ndarray, str]]:
    """(composite, caption with its L2 to the photo) for each global baseline and for the per-segment inversion
    (as first inverted), side by side; empty before inverting. With an edit and the global W+ baseline, then
    the edit and the same edit of the one W+ code, each captioned with the share of pixels outside the edited
    segments that changed (`Session.preservation`)."""
    state = session.state
    if state.result is None:
        return []
    photo = uint8_to_tensor(session.target_image)
    shown = [(label, r.composite) for label, r in state.baselines] + [("per segment (chunky)", state.first_composite)]
    gallery = [
        (tensor_to_uint8(image), f"{label}: L2 {float(l2_distance(image.cpu(), photo)[0]):.4f}")
        for label, image in shown
        if image is not None
    ]
    one_code = session.global_edit()
    if one_code is not None:
        _, one_code_figures = session.global_preservation()
        outside = "changed outside the edited segments"
        gallery.append(
            (session.display(), f"the edit, per segment: {session.preservation().outside_changed_share:.1%} {outside}")
        )
        gallery.append(
            (one_code, f"the same edit, one W+ code: {one_code_figures.outside_changed_share:.1%} {outside}")
        )
    return gallery


def slider_directions(directions: list, limit: int) -> list:
    """The first ``limit`` directions, grouped by source (groups in order of first appearance), as sliders show them."""
    directions = directions[:limit]
    groups = list(dict.fromkeys(d.group for d in directions))
    return sorted(directions, key=lambda d: groups.index(d.group))


# Runs once in the page. Enter in a slider's number box takes the focus away: Gradio's slider commits a typed value
# (its "release" event) when the box loses focus, not on Enter, so the edit is rendered and committed at once.
# Leaving or reloading the page once a result is shown asks first (the work lives on the server, in this tab).
# The column with the result, the status, Undo and Cancel stays in view: beside the controls on a wide screen,
# as a strip at the top on a phone.
PAGE_STYLE = """
.gradio-container { overflow: clip !important; }  /* hidden made it a scroll box: nothing inside could stick */
#live { position: sticky; top: 8px; align-self: flex-start; }
#live-images, #live-buttons { flex-wrap: nowrap; }
#live-images > *, #live-buttons > * { min-width: 0 !important; }
#live img, #crop img, #overlay img { width: 100%; height: 100%; object-fit: contain; }
#grid img { padding-top: 2.4em; }  /* the grid's title row below the image's label and buttons */
@media (max-width: 760px) {
  #live { top: 0; z-index: 1000; order: -1; background: var(--background-fill-primary); padding: 4px 0;
          box-shadow: 0 2px 6px rgba(0, 0, 0, 0.2); }
  #photo, #result { height: 22vh !important; }
  #live-buttons button { padding: 4px; }
}
"""
PAGE_SCRIPT = (
    """() => {
  const style = document.createElement("style");
  style.textContent = `"""
    + PAGE_STYLE
    + """`;
  document.head.appendChild(style);
  document.addEventListener("keydown", (event) => {
    const box = event.target;
    if (event.key === "Enter" && box instanceof HTMLInputElement && box.type === "number"
        && box.closest("[id^='slider-']")) {
      box.blur();
    }
  });
  window.addEventListener("beforeunload", (event) => {
    if (document.querySelector("#result img")) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
}"""
)
POINT_NAMES = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")  # as seen
PLACING_SIDE = 1024  # the photo is shown at most this large for placing points


def placing_screen(photo: np.ndarray, points_text, clicked, detector, propose_for: int | None):
    """The placing view after a click: (the photo with its points drawn, the points as text, the hint).

    Args:
        photo: [H, W, 3] uint8.
        points_text: the points so far, "x1,y1,x2,y2,..." in photo pixels.
        clicked: (x, y) where the shown photo was clicked (shown pixels), or None.
        detector: proposes the five points of face ``propose_for`` when there are none yet (None: no proposal).
    """
    numbers, scale = parse_points(points_text), placing_scale(photo.shape)
    hint = next_point_hint(len(numbers) // 2)
    if propose_for is not None and not numbers and detector is not None:
        numbers, hint = proposed_points(detect_faces(photo, detector), propose_for)
    if clicked is not None:
        numbers, hint = click_point(numbers, (clicked[0] / scale, clicked[1] / scale))
    shown, _ = placing_view(photo, np.array(numbers[: len(numbers) // 2 * 2]))
    return shown, ",".join(f"{v:g}" for v in numbers), hint


def placing_view(photo: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float]:
    """The photo ([H, W, 3] uint8) at most ``PLACING_SIDE`` px, with the placed ``points`` ([n, 2] photo pixels,
    n <= 5) drawn as numbered dots. Returns (image, its scale: shown pixels per photo pixel)."""
    from PIL import Image, ImageDraw

    scale = placing_scale(photo.shape)
    shown = Image.fromarray(photo)
    if scale < 1:
        shown = shown.resize((round(photo.shape[1] * scale), round(photo.shape[0] * scale)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(shown)
    radius = max(3, round(max(shown.size) / 150))
    for k, (x, y) in enumerate(np.asarray(points, float).reshape(-1, 2) * scale):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 0, 0), outline=(255, 255, 255))
        draw.text((x + radius + 2, y - radius), str(k + 1), fill=(255, 255, 0))
    return np.asarray(shown), scale


def placing_scale(shape: tuple[int, ...]) -> float:
    """Shown pixels per photo pixel when a photo of ``shape`` ([H, W, ...]) is shown for placing points."""
    return min(1.0, PLACING_SIDE / max(shape[:2]))


def next_point_hint(count: int) -> str:
    """What to click next, after ``count`` points."""
    if count >= len(POINT_NAMES):
        return "Five points placed: click near one to move it, then Align to these points (or Clear to start again)."
    return f"Point {count + 1} of 5: click the {POINT_NAMES[count]} (as seen in the picture)."


def parse_points(text) -> list[float]:
    """The numbers of a points box ("x1,y1,x2,y2,..."), at most 10; anything that is not text gives none.
    Raises ValueError for a value that is not a number."""
    if not isinstance(text, str):
        return []
    return [float(v) for v in text.split(",") if v.strip()][:10]


def click_point(numbers: list[float], clicked: tuple[float, float]) -> tuple[list[float], str]:
    """A click at ``clicked`` (photo pixels) on the placing photo: the next point while fewer than five are
    placed, else the nearest of the five moves there (what dragging a point does). Returns (the points'
    numbers, the hint)."""
    x, y = round(clicked[0]), round(clicked[1])
    if len(numbers) < 10:
        numbers = numbers[: len(numbers) // 2 * 2] + [x, y]
        return numbers, next_point_hint(len(numbers) // 2)
    points = np.asarray(numbers, float).reshape(5, 2)
    nearest = int(np.argmin(((points - (x, y)) ** 2).sum(axis=1)))
    numbers = list(numbers)
    numbers[2 * nearest : 2 * nearest + 2] = [x, y]
    return numbers, f"Moved the {POINT_NAMES[nearest]}. Click near a point to move it, or Align to these points."


def proposed_points(faces: list, face_index: int) -> tuple[list[float], str]:
    """The detector's five points for face ``face_index`` of ``faces`` (`chunky.align.DetectedFace`, largest
    first) to start from, rounded to photo pixels, and the hint; none when that face was not found."""
    if not 0 <= face_index < len(faces):
        found = f"{len(faces)} face(s) found, none numbered {face_index}" if faces else "No face found"
        return [], f"{found}: place the points yourself. {next_point_hint(0)}"
    numbers = [float(round(v)) for v in np.asarray(faces[face_index].landmarks).ravel()]
    return numbers, (
        f"The detector's points for face {face_index} of {len(faces)}: click near a point to move it, "
        "then Align to these points (or Clear to place all five yourself)."
    )
