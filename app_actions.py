"""How a handler of the page becomes an event: its inputs checked, its job admitted, its result drawn.

`action` wraps a handler ``fn(page, session, *inputs) -> (session, message[, extras...])``: the inputs are
checked against their declared `chunky.inputs.Input` (the annotations), a long job waits for its turn in `JOBS`
(Cancel reaches it while it waits), a refused or failed action leaves the session as it was, and the page is
redrawn from the session by `screen`. Nothing here knows which handlers exist; `app.py` defines them.
The server's budgets live here too: `JOBS`, `SESSIONS`, and each visitor's upload and export quotas.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import os
import time
import uuid
from pathlib import Path

import gradio as gr
import PIL.Image
import torch
from gradio import processing_utils
from starlette.middleware import Middleware

from app_sketch import show_picture
from chunky import views
from chunky.calibration import Estimates
from chunky.config import PRESET_NAMES
from chunky.device import BF16_MIN_SAVING, PRECISIONS
from chunky.errors import ChunkyError, InvalidInputError
from chunky.export import FolderBudget
from chunky.images import MAX_PIXELS
from chunky.inputs import Input, slider_values
from chunky.jobs import BusyError, JobQueue
from chunky.parking import Parking, is_token, new_token
from chunky.quota import BodyLimit, ByteQuota, UploadQuota, client_address
from chunky.session import KEEP_BY_DEFAULT, Session
from chunky.session_budget import SessionBudget

log = logging.getLogger("chunky.app")

JOBS = JobQueue(slots=int(os.environ.get("CHUNKY_CONCURRENCY", "1")), max_waiting=8)  # long jobs, one per session
SESSIONS = SessionBudget(  # every visitor's work together; idle work is set aside first
    max_bytes=int(os.environ.get("CHUNKY_SESSION_MEMORY_MB", "6000")) << 20,
    idle_s=float(os.environ.get("CHUNKY_SESSION_IDLE_S", "600")),
)
# Per visitor (network address) and hour, so that one client cannot fill the disk budgets for everyone.
# Gradio may decode an image widget's file itself, before any handler: Pillow's own guard refuses, from the header,
# an image of more than twice this many pixels (the reader's MAX_PIXELS) instead of decoding gigabytes.
PIL.Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2


def save_image_to_cache(image: PIL.Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's `processing_utils.save_pil_to_cache`, written safely for concurrent downloads: Gradio names an
    output image's folder by the hash of its bytes and rewrote the file on every output, truncating it first, so
    a visitor downloading the same picture meanwhile (every visitor of an example gets the same crop) could get a
    cut file. Here an existing file of that content is left alone, and a new one is written beside it and renamed
    into place (a download in progress keeps reading the complete old file). Returns the file's path."""
    data = processing_utils.encode_pil_to_bytes(image, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if not (path.is_file() and path.stat().st_size == len(data)):
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            partial.write_bytes(data)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)  # only left when writing failed (a full disk)
    return str(path)


processing_utils.save_pil_to_cache = save_image_to_cache  # every image Gradio sends goes through it (6.31)
ESTIMATES = Estimates()  # each preset's time on this device, measured in the background at start-up (app.main)
UPLOAD_QUOTA = ByteQuota(int(os.environ.get("CHUNKY_UPLOAD_MB_PER_HOUR", "1024")) << 20, "uploads")
EXPORT_QUOTA = ByteQuota(int(os.environ.get("CHUNKY_EXPORT_MB_PER_HOUR", "512")) << 20, "exports")
# Trusted proxies in front of the server: a Hugging Face Space has one, which adds the visitor to X-Forwarded-For.
UPLOADS_PARENT = os.environ.get("GRADIO_TEMP_DIR")  # the operator's choice, read before private_uploads sets it
PARKING = Parking(keep_s=float(os.environ.get("CHUNKY_KEEP_CLOSED_S", "900")))  # a closed tab's work, for a reload
MAX_REQUEST_BYTES = 16 << 20  # an action's inputs (not uploads): the sketch's strokes are at most 8 MiB
PROXY_HOPS = int(os.environ.get("CHUNKY_PROXY_HOPS", "1" if os.environ.get("SPACE_ID") else "0"))


def precision_setting(choice: str, editor) -> dict:
    """The ``precision`` field for a config from the page's Precision choice: "fp32" or "bf16" as chosen; "auto"
    gives the precision measured at start-up (`ESTIMATES`), and until it is measured (or if measuring failed) the
    model's own (``editor.default_precision``), else bf16 on a CPU and fp32 on a GPU."""
    if choice != "auto":
        return {"precision": choice}
    fallback = editor.default_precision or ("bf16" if editor.device.type == "cpu" else "fp32")
    return {"precision": ESTIMATES.precision or fallback}


def measured_choices() -> tuple:
    """Updates of the Quality and Precision choices with what start-up measured: each preset's time, and which
    precision "auto" is and why (unchanged labels until measured)."""
    precisions = ["auto", *PRECISIONS]
    choice = ESTIMATES.choice
    if choice is not None:
        margin = f"bf16 when at least {BF16_MIN_SAVING:.0%} faster"
        speed = f"bf16 {choice.bf16_speedup:.1f}x the speed of fp32 here; {margin}"
        precisions = [(f"auto ({choice.precision}: {speed})", "auto")] + precisions[1:]
    return gr.update(choices=ESTIMATES.choices(PRESET_NAMES)), gr.update(choices=precisions)


def visitor(request) -> str:
    """The network address a request counts against (`chunky.quota.client_address`); "unknown" without one."""
    if not isinstance(request, gr.Request) or request.client is None:
        return "unknown"
    return client_address(request.client.host, request.headers.get("x-forwarded-for"), PROXY_HOPS)


def private_uploads() -> FolderBudget:
    """Gradio's upload folder, made private to this process: a new 0700 folder inside ``$GRADIO_TEMP_DIR``
    (or the system's temporary folder), given to Gradio through that variable. The prune then deletes only
    what this app's visitors uploaded, never a pre-existing folder or a link's target."""
    uploads = FolderBudget(max_age_s=3600, max_bytes=2 << 30, prefix="chunky-uploads-", parent=UPLOADS_PARENT)
    os.environ["GRADIO_TEMP_DIR"] = str(uploads.root)
    return uploads


class Ticket(str):
    """The browser's token (`chunky.parking`), also kept in the tab's own state, where `park_when_the_tab_closes`
    finds it."""


def park_when_the_tab_closes(demo: gr.Blocks):
    """The `Blocks.unload` handler: when a tab is closed or reloaded, the jobs of the sessions it held are
    cancelled (a waiting one leaves the line at once, a running one stops at its next step), so the slot is
    free for the next visitor instead of finishing work nobody will see; the tab's work is parked under its
    browser's token, for `restore_parked` when a page of that browser opens again."""

    def left(request: gr.Request) -> None:
        state = demo.state_holder.session_data.get(getattr(request, "session_hash", None) or "")
        values = list(state.state_data.values()) if state is not None else []
        ticket = next((value for value in values if isinstance(value, Ticket)), None)
        for value in values:
            if isinstance(value, Session):
                value.cancel.set()
                if ticket is not None:
                    PARKING.park(str(ticket), value)

    return left


RESTORE_WAIT_S = 10.0  # a page load waits this long for the stopped job of the work it restores
STILL_STOPPING = "Your earlier work is still finishing its last step; reload the page in a moment to get it back."
RESTORED = "Restored your work from before the page was closed or reloaded (a stopped job: its best so far)."


def restore_parked(slider_names):
    """The page's load handler: (browser token) -> the screen of this browser's parked work (or no change), the
    tab's `Ticket` and the token (a new one for a browser that had none)."""

    def restore(token):
        token = token if is_token(token) else new_token()
        unchanged = [gr.update()] * (len(SCREEN_PARTS) + len(slider_names))
        s = PARKING.take(token)
        if s is None or s.released:
            return unchanged + [Ticket(token), token]
        try:  # a job the closing stopped ends at its next step: show what it left
            with s.acting(wait=True, timeout=RESTORE_WAIT_S):
                parts = screen(slider_names, s, RESTORED)
        except InvalidInputError:  # still busy (or set aside meanwhile): parked again for the next reload
            PARKING.park(token, s)
            unchanged[SCREEN_PARTS.index("status")] = STILL_STOPPING
            return unchanged + [Ticket(token), token]
        SESSIONS.track(s)  # in use again: the idle clock starts over
        return parts + [Ticket(token), token]

    return restore


def upload_quota_middleware() -> dict:
    """`launch`'s ``app_kwargs`` that put `UploadQuota` in front of Gradio's upload route and `BodyLimit` in front
    of every other route."""
    return {
        "middleware": [
            Middleware(UploadQuota, quota=UPLOAD_QUOTA, proxy_hops=PROXY_HOPS),
            Middleware(BodyLimit, max_bytes=MAX_REQUEST_BYTES),
        ]
    }


SCREEN_PARTS = (
    "session status crop overlay legend sketch reproject sketch_segment merge_choice variation_segment "
    "reproject_after tune_choice targets result photo renders metrics baselines transfer_segment preset"
).split()


def screen(slider_names, s: Session, message: str, before=None) -> list:
    """Every output of `SCREEN_PARTS` plus the sliders, drawn from the session: what the page shows is a function
    of the state. Parts that did not change since the ``before`` state are left as they are (no re-encoding)."""
    state = s.state
    names = list(s.names)
    parts = {name: gr.update() for name in SCREEN_PARTS}
    parts["session"] = s
    parts["status"] = message
    parts["targets"] = gr.update(choices=names, value=list(state.targets))
    parts["result"] = s.display()
    if before is None or state.segmentation is not before.segmentation:
        chosen = [n for n in names if n not in KEEP_BY_DEFAULT]
        parts["crop"] = s.aligned.crop
        parts["overlay"] = state.segmentation.overlay(s.target_image)
        parts["legend"] = views.legend(s)
        parts["sketch"] = show_picture(state.segmentation.boundaries(s.target_image))  # strokes applied: cleared
        parts["reproject"] = gr.update(choices=names, value=chosen)
        same_names = before is not None and before.segmentation.names == state.segmentation.names
        parts["sketch_segment"] = gr.update(choices=names) if same_names else gr.update(choices=names, value=names[0])
        parts["merge_choice"] = gr.update(choices=names, value=[])
        parts["variation_segment"] = gr.update(choices=names, value=(chosen or names)[0])
        parts["reproject_after"] = gr.update(choices=names, value=[])
        parts["tune_choice"] = gr.update(choices=names, value=[])
        projected = [n for n in names if n not in KEEP_BY_DEFAULT]
        parts["preset"] = gr.update(choices=ESTIMATES.choices(PRESET_NAMES, segments=len(projected) or len(names)))
        transferable = projected or names  # what a reference can give
        parts["transfer_segment"] = gr.update(
            choices=transferable, value="hair" if "hair" in transferable else transferable[0]
        )
    if before is None or state.result is not before.result or state.baselines is not before.baselines:
        parts["photo"] = s.target_image
        parts["renders"] = views.renders(s)
        parts["metrics"] = views.metrics(s)
    if (
        before is None
        or state.result is not before.result
        or state.baselines is not before.baselines
        or (state.edit is not before.edit and state.baselines)
    ):  # the comparison shows the edit beside the same edit of one code
        parts["baselines"] = views.baselines(s)
    strengths = s.strengths()
    return [parts[name] for name in SCREEN_PARTS] + [strengths.get(name, 0.0) for name in slider_names]


def action(fn=None, *, extras=0, needs_session=True, sliders=False, long=False):
    """Wrap a handler ``fn(page, *inputs) -> (session, message[, extras...])`` into one returning the screen. With
    ``sliders``, inputs are ``(session, targets, ..., *slider values)`` and the sliders become the edit first;
    a ``long`` job waits for its turn in `JOBS` (one per session)."""
    if fn is None:
        return functools.partial(action, extras=extras, needs_session=needs_session, sliders=sliders, long=long)
    inputs = declared_inputs(fn)

    @functools.wraps(fn)
    def wrapper(page, *args, **kwargs):
        start = time.perf_counter()
        try:
            if needs_session and args[0] is None:
                raise InvalidInputError("Load a photo first (step 1).")
            if sliders:
                split = len(args) - len(page.names)
                args, strengths = args[:split], slider_values(page.names, args[split:], page.limits)
            args = tuple(i.check(a) if i else a for i, a in zip(inputs, args)) + args[len(inputs) :]
            if not needs_session:  # a new photo: only while the sessions' memory has room for it
                SESSIONS.enforce()
                if SESSIONS.over_budget():
                    raise BusyError("The server's memory is full of other visitors' work; try again in a few minutes.")

            def waiting(ahead: int, eta: float) -> None:
                for bar in (a for a in args if isinstance(a, gr.Progress)):
                    bar(0, desc=f"{ahead} ahead, ~{eta:.0f} s")

            admitted = contextlib.nullcontext()
            if long:  # Cancel reaches it from now on, while it waits for its turn too
                args[0].begin_request()
                admitted = JOBS.admit(args[0], label=fn.__name__, on_wait=waiting, cancelled=args[0].cancel.is_set)
            with admitted, args[0].acting(wait=long) if needs_session else contextlib.nullcontext():
                snapshot = args[0].snapshot() if needs_session else None
                try:
                    before = args[0].state if needs_session else None  # the page as this request found it
                    if sliders:
                        args[0].set_edit(strengths, args[1])
                    s, message, *more = fn(page, *args, **kwargs)
                except BaseException:  # a refused or failed action changes nothing, the slider edit included
                    if snapshot is not None:
                        args[0].restore(snapshot)
                    raise
            SESSIONS.track(s)
            took = time.perf_counter() - start
            return [*screen(page.names, s, f"{message} ({took:.1f} s)" if took >= 0.1 else message, before), *more]
        except ChunkyError as error:
            message = str(error)
        except torch.OutOfMemoryError:
            message = "Out of memory: choose the Preview preset or fewer segments."
        except Exception as error:  # the UI never shows a traceback; the log keeps it
            log.exception("unexpected error in %s", fn.__name__)
            message = f"Something went wrong ({type(error).__name__}); your work is unchanged."
        gr.Warning(message)
        return [gr.update(), f"⚠ {html.escape(message)}"] + [gr.update()] * (
            len(SCREEN_PARTS) - 2 + len(page.names) + extras
        )

    if sliders:  # Gradio passes the slider values last
        parameters = [
            *inspect.signature(fn).parameters.values(),
            inspect.Parameter("values", inspect.Parameter.VAR_POSITIONAL),
        ]
        wrapper.__signature__ = inspect.signature(fn).replace(parameters=parameters)
    return wrapper


def declared_inputs(fn) -> list[Input | None]:
    """Each argument's `chunky.inputs.Input` after ``self`` (its annotation in ``fn``), None where none is declared."""
    hints = inspect.get_annotations(fn, eval_str=True)
    names = list(inspect.signature(fn).parameters)[1:]
    return [hints[n] if isinstance(hints.get(n), Input) else None for n in names]
