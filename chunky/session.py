"""One user's work, with one owner: the loaded photo, its named segments, the inversion, the current
edit and the undo history. The app keeps one `Session` per browser tab (in `gr.State`), the CLI one per
run; nothing here is shared between users.

Every change is a method that replaces the current `State` (immutable) by a new one and pushes the old
one on the history, so undo restores exactly the previous state, whatever the action. The photo and
its aligned crop are never changed: a frozen edit becomes the inversion's *target*, kept beside them.
Names and masks live together in one `Segmentation`, the only map from names to indices; the
inversion's masks are always that segmentation's masks.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from chunky.align import AlignedFace
from chunky.config import MAX_STEPS, InversionConfig, whole
from chunky.editing import EditResult, freeze
from chunky.editor import ChunkyEditor, segment_indices
from chunky.errors import InvalidInputError
from chunky.images import resize_uint8, tensor_to_uint8
from chunky.inversion import InversionResult, ProgressCallback, select_rows, space_of
from chunky.preservation import Preservation, preservation
from chunky.segmentation import Segmentation

KEEP_BY_DEFAULT = ("background",)
HISTORY_STEPS = 30  # undo steps kept; the oldest go first ...
HISTORY_BYTES = 192 << 20  # ... and while the tensors the history alone holds exceed this
SHORT_WAIT_S = 30  # a short action waits this long at most for another one of the same session
MAX_TUNED_GENERATORS = 2  # fine-tuned generator copies one session may hold (133 MB each at 1024 px)


@dataclass(frozen=True)
class State:
    """One state of a user's work (never modified: a change makes a new one).

    Attributes:
        segmentation: the named segments at the work size.
        result: the inversion (its masks are ``segmentation.masks``), or None before inverting.
        strengths: (direction name, slider value) pairs of the current edit, non-zero only.
        targets: names of the segments the edit moves (empty: every projected segment).
        edit: the edit that ``strengths`` and ``targets`` give, None without strengths.
        baselines: (label, global inversion) pairs, for comparison.
        first_composite: [1, 3, S, S] the inversion's composite before any freeze (the grid's "chunky" column).
        action: what made this state, e.g. "invert" (shown by undo).
    """

    segmentation: Segmentation
    result: InversionResult | None = None
    strengths: tuple[tuple[str, float], ...] = ()
    targets: tuple[str, ...] = ()
    edit: EditResult | None = None
    baselines: tuple[tuple[str, InversionResult], ...] = ()
    first_composite: torch.Tensor | None = None
    action: str = "load"

    @property
    def names(self) -> tuple[str, ...]:
        return self.segmentation.names

    def display(self) -> torch.Tensor | None:
        """[1, 3, S, S] what the page shows: the edited composite, else the inversion's, else None."""
        if self.edit is not None:
            return self.edit.composite
        return None if self.result is None else self.result.composite


PREVIEW_MIN_SIDE = 128  # px: a live preview smaller than this is too coarse to judge an edit by


@dataclass
class Session:
    """Attributes:
    editor: the shared models (read-only).
    aligned: the photo, its aligned crop and how to paste back (never changed).
    automatic: the segments found automatically (for "reset").
    state: the current state; ``history`` the earlier ones, oldest first.
    cancel: set to stop the running optimisation, or the waiting one (`begin_request` clears it).
    released: why this session's memory was given back (`release`); empty while it is alive.
    """

    editor: ChunkyEditor
    aligned: AlignedFace
    automatic: Segmentation
    state: State
    history: list[State] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _long_job: bool = field(default=False, repr=False)
    _offers: tuple[InversionResult | None, list[EditResult]] = (None, [])
    released: str = field(default="", repr=False)
    _global_edit: tuple[EditResult | None, np.ndarray | None] = field(default=(None, None), repr=False)

    @classmethod
    def start(
        cls,
        editor: ChunkyEditor,
        photo: np.ndarray,
        *,
        face_index: int = 0,
        skip_alignment: bool | None = None,
        segmentation: Segmentation | None = None,
        size: int | None = None,
        landmarks: np.ndarray | None = None,
    ) -> Session:
        """Align ``photo`` ([H, W, 3] uint8) and segment it (automatically unless ``segmentation`` is given).

        ``size``: the side the session works at (renders, composite, masks); default ``editor.work_size()``.
        ``landmarks``: five points placed by hand instead of detection (see `chunky.align.align_face`)."""
        face_index = whole("face number", face_index, 0, 100)
        aligned = editor.align(photo, face_index=face_index, skip_alignment=skip_alignment, landmarks=landmarks)
        aligned = aligned.compact()
        found = (segmentation or editor.segment(aligned.crop)).resized(size or editor.work_size())
        return cls(editor, aligned, found, State(found))

    @property
    def size(self) -> int:
        """The side of this session's renders, composite and masks."""
        return self.state.segmentation.size

    # ------------------------------------------------------------------------------- reading
    @property
    def names(self) -> tuple[str, ...]:
        return self.state.names

    @property
    def target_image(self) -> np.ndarray:
        """[S, S, 3] uint8: the aligned photo at the work size (what the inversion compares with)."""
        return resize_uint8(self.aligned.crop, self.size)

    def display(self) -> np.ndarray | None:
        """[S, S, 3] uint8: what the page shows as the result (None before inverting)."""
        image = self.state.display()
        return None if image is None else tensor_to_uint8(image)

    def strengths(self) -> dict[str, float]:
        return dict(self.state.strengths)

    def require_result(self) -> InversionResult:
        if self.state.result is None:
            raise InvalidInputError("Run the inversion first (step 3: Invert).")
        return self.state.result

    def begin_request(self) -> None:
        """Start a request that Cancel may stop: an earlier Cancel is forgotten. Call it when the request
        arrives, before it waits for its turn, so a Cancel pressed while it waits reaches it."""
        self.cancel.clear()

    def progress(self, report: Callable[[int, int, str], object], *, seconds: float) -> ProgressCallback:
        """A progress callback for one request, however many optimisations it runs (baselines, re-projections):
        ``report(step, total, text)`` sees each step; it stops at `cancel` or once ``seconds`` have passed since
        this call."""
        start = time.perf_counter()

        def callback(step: int, total: int, info: dict) -> bool:
            what = f"{info['what']}, " if info.get("what") else ""
            phase = f"{info['phase']}: " if info.get("phase") else ""
            report(step, total, f"{what}{phase}loss {info['loss']:.3f}, about {info['eta']:.0f} s left")
            return not self.cancel.is_set() and time.perf_counter() - start < seconds

        return callback

    @contextmanager
    def acting(self, *, wait: bool = False, timeout: float | None = None):
        """Hold this session for one action, so two actions never interleave (a web page can send several at
        once: a typed slider value and the Export click). A short action (``wait`` False) waits for another
        short one, but is refused at once while a long job (``wait`` True) holds the session. A long job waits
        for the session without limit, or ``timeout`` seconds (then refused like a short action)."""
        if self.released:
            raise InvalidInputError(self.released)
        if not wait and self._long_job:
            raise InvalidInputError("Your previous action is still running; wait for it to finish (or press Cancel).")
        limit = (-1 if timeout is None else timeout) if wait else SHORT_WAIT_S
        if not self._lock.acquire(timeout=limit):
            raise InvalidInputError("Your previous action is still running; wait for it to finish (or press Cancel).")
        self._long_job = wait
        try:
            yield self
        finally:
            self._long_job = False
            self._lock.release()

    # ------------------------------------------------------------------------------- history
    def _push(self, state: State) -> None:
        self.history.append(self.state)
        del self.history[:-HISTORY_STEPS]
        self.state = state
        while len(self.history) > 1 and history_bytes(self.history, self.state) > HISTORY_BYTES:
            del self.history[0]

    def release(self, reason: str) -> bool:
        """Give back this session's memory (its history, inversion, offers, segments, crop and photo) unless an
        action holds it; every later action is refused with ``reason``. Returns whether it was released."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self.released = reason
            self.history = []
            self.automatic = Segmentation(("released",), torch.zeros(1, 1, 1, 1))  # a 1-pixel placeholder
            self.state = State(self.automatic)
            self._offers = (None, [])
            self._global_edit = (None, None)
            nothing = np.zeros((1, 1, 3), np.uint8)
            self.aligned = dataclasses.replace(self.aligned, crop=nothing, original=nothing, boxes=[])
        finally:
            self._lock.release()
        return True

    def snapshot(self) -> tuple[State, list[State]]:
        """The state and the undo history, for `restore`."""
        return self.state, list(self.history)

    def restore(self, snapshot: tuple[State, list[State]]) -> None:
        """Go back to a `snapshot` (an action that failed half-way leaves no trace, not even in the history)."""
        self.state, self.history = snapshot[0], list(snapshot[1])

    def memory_bytes(self) -> int:
        """Bytes of the tensors and images this session holds (its state, history and photo)."""
        photo = self.aligned.photo_bytes() + self.aligned.crop.nbytes
        return (
            photo
            + history_bytes(self.history + [self.state], None)
            + sum(
                sum(p.numel() * p.element_size() for p in g.state_dict().values()) + g.prepared_bytes()
                for g in tuned_generators(self.history + [self.state])
            )
        )

    def undo(self) -> str:
        """Go back to the state before the last action; returns that action's name."""
        if not self.history:
            raise InvalidInputError("Nothing to undo.")
        undone = self.state.action
        self.state = self.history.pop()
        return undone

    # ------------------------------------------------------------------------------- segments
    def sketch(self, name: str, layers: Sequence[np.ndarray], *, erase: bool = False) -> None:
        """Painted pixels of each RGBA layer ([h, w, 4], any size) join segment ``name`` (or leave it)."""
        if not layers:
            raise InvalidInputError("Paint on the crop first.")
        segmentation = self.state.segmentation
        for layer in layers:
            segmentation = self.editor.sketch(segmentation, name, np.asarray(layer), erase=erase)
        self._change_segments(segmentation, "erase" if erase else "sketch")

    def merge(self, names: Sequence[str]) -> None:
        names = list(dict.fromkeys(names or []))
        segment_indices(self.names, names)
        if len(names) < 2:
            raise InvalidInputError("Choose at least two different segments to merge.")
        self._change_segments(self.state.segmentation.merge(names, "+".join(names)), "merge")

    def split(self, name: str) -> None:
        self._change_segments(self.state.segmentation.split(name), "split")

    def reset_segments(self) -> None:
        self._change_segments(self.automatic, "reset segments")

    def _change_segments(self, segmentation: Segmentation, action: str) -> None:
        """New segments; an existing inversion carries over (each new segment starts from the code and render
        of the old segment it came from: same name, else the one it overlaps most)."""
        state = self.state
        if state.result is None:
            self._push(dataclasses.replace(state, segmentation=segmentation, action=action))
            return
        parents = parent_segments(state.segmentation, segmentation)
        result = carry_over(state.result, parents, segmentation.masks)
        targets = tuple(n for n, p in zip(segmentation.names, parents) if state.names[p] in state.targets)
        self._push(
            self._with_edit(
                dataclasses.replace(state, segmentation=segmentation, result=result, targets=targets, action=action)
            )
        )

    # ------------------------------------------------------------------------------- inversion
    def invert(
        self,
        config: InversionConfig,
        keep: Sequence[str] | None = None,
        *,
        baselines: bool = False,
        progress: ProgressCallback | None = None,
    ) -> InversionResult:
        """Invert the photo, one code per segment (and, with ``baselines``, one global W and one W+ code).
        ``keep``: names taken straight from the photo (default: the background, if there is one). The edit is
        cleared: a new inversion starts a new edit (undo goes back)."""
        keep = [n for n in KEEP_BY_DEFAULT if n in self.names] if keep is None else list(keep)
        segment_indices(self.names, keep)  # a clear error for an unknown name
        result = self.editor.invert(
            self.target_image,
            self.state.segmentation,
            config=config,
            keep=keep,
            size=self.size,
            progress=_naming(progress, "per-segment codes"),
        )
        found = []
        for label, space in (("global W", "w"), ("global W+", "w+")) if baselines and not result.cancelled else ():
            named = _naming(progress, f"comparison code ({label})")
            found.append(
                (
                    label,
                    self.editor.invert(
                        self.target_image, None, config=config.replace(space=space), size=self.size, progress=named
                    ),
                )
            )
            if found[-1][1].cancelled:
                break
        self._push(
            State(
                self.state.segmentation,
                result,
                baselines=tuple(found),
                first_composite=result.composite,
                action="invert",
            )
        )
        return result

    # ------------------------------------------------------------------------------- editing
    def set_edit(self, strengths: Mapping[str, float], targets: Sequence[str] = ()) -> None:
        """The slider edit: ``strengths`` (direction name -> value) applied to the ``targets`` segments (none:
        every projected one). Nothing happens when they are what the state holds already."""
        self.require_result()
        clean = tuple(sorted(_clean_strengths(strengths).items()))
        targets = tuple(dict.fromkeys(targets or ()))
        if clean == self.state.strengths and targets == self.state.targets:
            return
        self._push(self._with_edit(dataclasses.replace(self.state, strengths=clean, targets=targets, action="edit")))

    def edited_region(self) -> np.ndarray:
        """[S, S] bool: the pixels the current edit's segments touch (the targets, else every projected one)."""
        result = self.require_result()
        indices = segment_indices(self.names, self.state.targets) if self.state.targets else result.projected
        indices = [k for k in indices if k in result.projected]
        return (self.state.segmentation.masks[indices, 0] > 0).any(dim=0).cpu().numpy()

    def preservation(self, *, perceptual=None, identity=None) -> Preservation | None:
        """How local the current edit is (`chunky.preservation`): against the reconstruction it started from
        and the photo; None without an edit."""
        if self.state.edit is None:
            return None
        reconstruction = tensor_to_uint8(self.state.result.composite)
        return preservation(
            self.target_image,
            reconstruction,
            self.display(),
            self.edited_region(),
            perceptual=perceptual,
            identity=identity,
        )

    def global_preservation(self, *, perceptual=None, identity=None) -> tuple[np.ndarray, Preservation] | None:
        """The same edit (same strengths) applied to the one global W+ code (the "global W+" baseline, from
        `invert(..., baselines=True)`), measured over the same region as `preservation`: the comparison with
        one code for the whole image. Returns (the global edit [S, S, 3] uint8, its figures); None without an
        edit."""
        if self.state.edit is None:
            return None
        found = dict(self.state.baselines).get("global W+")
        if found is None:
            raise InvalidInputError(
                "Invert with the global baselines first: the one-code edit needs the global W+ code."
            )
        edited = self.global_edit()
        figures = preservation(
            self.target_image,
            tensor_to_uint8(found.composite),
            edited,
            self.edited_region(),
            perceptual=perceptual,
            identity=identity,
        )
        return edited, figures

    def global_edit(self) -> np.ndarray | None:
        """[S, S, 3] uint8: the current edit's strengths applied to the one global W+ code (the "global W+"
        baseline); None without an edit or without that baseline. Rendered once per edit and kept."""
        found = dict(self.state.baselines).get("global W+")
        if self.state.edit is None or found is None:
            return None
        key, image = self._global_edit
        if key is not self.state.edit:
            image = tensor_to_uint8(self.editor.edit(found, dict(self.state.strengths), None).composite)
            self._global_edit = (self.state.edit, image)
        return image

    def preview(self, strengths: Mapping[str, float], targets: Sequence[str] = ()) -> np.ndarray | None:
        """[s, s, 3] uint8: the composite ``strengths`` would give, for a live preview while a slider moves
        (nothing changes), at a quarter of the work size but at least `PREVIEW_MIN_SIDE` px (the whole work
        size when that is smaller); None before inverting."""
        if self.state.result is None:
            return None
        clean = _clean_strengths(strengths)
        size = min(self.size, max(PREVIEW_MIN_SIDE, self.size // 4))
        edit = self.editor.edit(self.state.result, clean, list(targets) or None, names=self.names, resolution=size)
        return tensor_to_uint8(edit.composite)

    def _with_edit(self, state: State) -> State:
        """``state`` with its edit recomputed from its result, strengths and targets."""
        if state.result is None or not state.strengths:
            return dataclasses.replace(state, edit=None)
        edit = self.editor.edit(state.result, dict(state.strengths), state.targets or None, names=state.names)
        return dataclasses.replace(state, edit=edit)

    def freeze(
        self, reproject: Sequence[str] = (), *, steps: int = 30, progress: ProgressCallback | None = None
    ) -> None:
        """The edited composite becomes the target of the next edit; ``reproject`` segments then adapt to it
        (from their current codes). The sliders go back to 0."""
        state = self.state
        if state.edit is None:
            raise InvalidInputError("There is no edit to freeze: move a slider first.")
        frozen = freeze(self.require_result(), state.edit)
        if reproject:
            steps = whole("re-projection steps", steps, 1, MAX_STEPS)
            frozen = self.editor.reproject(
                frozen, list(dict.fromkeys(reproject)), state.names, steps=steps, progress=progress
            )
        self._push(dataclasses.replace(state, result=frozen, strengths=(), edit=None, action="freeze"))

    def refine(self) -> None:
        """Level-set refinement of every boundary against the target (using the edited renders when editing)."""
        state = self.state
        refined, _ = self.editor.refine(self.require_result(), state.edit)
        segmentation = dataclasses.replace(state.segmentation, masks=refined.masks)
        self._push(
            self._with_edit(dataclasses.replace(state, segmentation=segmentation, result=refined, action="refine"))
        )

    def variations(self, segment: str, *, seed: int = 0, count: int = 4) -> list[np.ndarray]:
        """``count`` style variations of one segment ([S, S, 3] uint8 composites); `choose_variation` adopts one."""
        result = self.require_result()
        seed = whole("seed", seed, 0, 2**31 - 1)
        offers = self.editor.variations(result, segment, self.names, count=count, seed=seed)
        self._offers = (result, offers)
        return [tensor_to_uint8(offer.composite) for offer in offers]

    def choose_variation(self, index: int) -> None:
        """Adopt variation ``index``: its segment's code replaces the current one; the slider edit stays on top.
        Right after adopting one of these offers, another one replaces it (to compare them), in one undo step."""
        result, offers = self._offers
        if not 0 <= index < len(offers):
            raise InvalidInputError(f"There is no variation {index}: choose one of the {len(offers)} shown.")
        if result is not self.state.result:
            adopted_one = self.state.action == "variation" and self.history and self.history[-1].result is result
            if not adopted_one:
                raise InvalidInputError("These variations belong to an earlier state: show variations again.")
            self.state = self.history.pop()  # the other offer replaces the adopted one
        self._adopt(offers[index], "variation")

    def transfer(
        self,
        photo: np.ndarray,
        segment: str,
        *,
        skip_alignment: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Take ``segment`` (e.g. "hair") from a reference photo: it is aligned, segmented and inverted with
        this inversion's settings, and its segment (mask, code, render) replaces this one's."""
        result = self.require_result()
        if segment not in self.names:
            raise InvalidInputError(
                f"This photo has no segment {segment!r} now; its segments: {', '.join(self.names)}."
            )
        aligned = self.editor.align(photo, skip_alignment=skip_alignment)
        segments = self.editor.segment(aligned.crop).resized(self.size)
        if segment not in segments.names:
            raise InvalidInputError(
                f"The reference photo has no segment {segment!r} (found: {', '.join(segments.names)}); nothing was "
                "transferred."
            )
        keep = [n for n in segments.names if n in KEEP_BY_DEFAULT]
        reference = self.editor.invert(
            resize_uint8(aligned.crop, self.size),
            segments,
            config=result.config,
            keep=keep,
            size=self.size,
            progress=progress,
        )
        if reference.cancelled:
            raise InvalidInputError("The reference photo's inversion was cancelled; nothing was transferred.")
        self._adopt(
            self.editor.transfer(result, self.names, reference, segments.names, segment, stitch=False), "transfer"
        )

    def _adopt(self, change: EditResult, action: str) -> None:
        """Make ``change`` (codes, renders and possibly masks of some segments) part of the inversion."""
        state, result = self.state, self.require_result()
        masks = result.masks if change.masks is None else change.masks
        adopted = dataclasses.replace(
            result,
            codes=change.codes,
            renders=change.renders,
            masks=masks,
            composite=result.composite_of(change.renders, masks),
            config=result.config.replace(space=space_of(change.codes)),
            generators=change.generators,
        )
        segmentation = dataclasses.replace(state.segmentation, masks=masks)
        self._push(
            self._with_edit(dataclasses.replace(state, segmentation=segmentation, result=adopted, action=action))
        )

    def tune(self, segments: Sequence[str], *, steps: int = 40, progress: ProgressCallback | None = None) -> float:
        """Pivotal tuning: each named segment gets a fine-tuned generator copy (the slider edit stays on top).
        Returns the seconds spent; a cancel keeps the segments tuned so far."""
        segments, steps = list(dict.fromkeys(segments or ())), whole("fine-tuning steps", steps, 1, 1000)
        if not segments:
            raise InvalidInputError("Choose the segments to fine-tune.")
        start_result, start = self.require_result(), time.perf_counter()
        tuned = tuned_generators(self.history + [self.state])
        if len(tuned) + len(segments) > MAX_TUNED_GENERATORS:
            raise InvalidInputError(
                f"A session holds at most {MAX_TUNED_GENERATORS} fine-tuned segments ({len(tuned)} "
                "so far, kept for undo too); Invert again to start afresh."
            )
        result = start_result
        for name in segments:
            if self.cancel.is_set():
                break
            result = self.editor.tune(result, name, self.names, steps=steps, progress=progress)
        if self.state.result is not start_result:
            raise InvalidInputError("The inversion changed while fine-tuning (a merge, freeze or undo): tune again.")
        self._push(self._with_edit(dataclasses.replace(self.state, result=result, action="fine-tune")))
        return time.perf_counter() - start


def state_tensors(state: State):
    """Every tensor ``state`` holds (its generators' weights aside)."""
    yield state.segmentation.masks
    for result in [state.result, *(r for _, r in state.baselines)]:
        if result is not None:
            yield from (
                result.masks,
                result.target,
                result.renders,
                result.composite,
                *(result.codes if isinstance(result.codes, list) else [result.codes]),
            )
    if state.edit is not None:
        yield from (state.edit.renders, state.edit.composite)
    if state.first_composite is not None:
        yield state.first_composite


def _naming(progress: ProgressCallback | None, what: str) -> ProgressCallback | None:
    """``progress`` with ``what`` is being optimised added to its reports (info["what"])."""
    if progress is None:
        return None
    return lambda step, total, info: progress(step, total, {**info, "what": what})


def history_bytes(history: Sequence[State], current: State | None) -> int:
    """Bytes of tensor storage held by ``history`` and not by ``current`` (shared storage counted once)."""
    shared = {t.untyped_storage().data_ptr() for t in state_tensors(current)} if current is not None else set()
    seen: dict[int, int] = {}
    for state in history:
        for t in state_tensors(state):
            storage = t.untyped_storage()
            if storage.data_ptr() not in shared:
                seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def tuned_generators(states: Sequence[State]) -> list:
    """The distinct fine-tuned generator copies held by ``states``."""
    found = {}
    for state in states:
        if state.result is not None:
            found.update((id(g), g) for g in state.result.generators.values())
    return list(found.values())


def _clean_strengths(strengths: Mapping[str, float]) -> dict[str, float]:
    """The non-zero strengths as floats; NaN or infinity is refused with the direction's name."""
    return {str(k): _finite(k, v) for k, v in strengths.items() if v}


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise InvalidInputError(f"The strength of {name!r} is {value}; it must be a finite number.")
    return value


def parent_segments(old: Segmentation, new: Segmentation) -> list[int]:
    """For each new segment, the index of the old one it comes from: the same name, else the old segment
    it overlaps most (a merge comes from its largest part, a split part from the segment it split)."""
    parents = []
    for k, name in enumerate(new.names):
        if name in old.names:
            parents.append(old.names.index(name))
        else:
            overlap = (old.masks * new.masks[k : k + 1]).sum(dim=(1, 2, 3))
            parents.append(int(overlap.argmax()))
    return parents


def carry_over(result: InversionResult, parents: Sequence[int], masks: torch.Tensor) -> InversionResult:
    """``result`` for new segments (``masks`` [K', 1, S, S]), each taking the code, render, losses and
    fine-tuned generator of its parent segment; a segment whose parent was kept is kept."""
    keep = [k for k, p in enumerate(parents) if p in result.keep]
    projected = [k for k in range(len(parents)) if k not in keep]
    codes = select_rows(result.codes, [result.projected.index(parents[k]) for k in projected])
    renders = result.renders[list(parents)]
    return dataclasses.replace(
        result,
        codes=codes,
        projected=projected,
        keep=keep,
        masks=masks,
        renders=renders,
        composite=result.composite_of(renders, masks, keep=keep),
        segment_losses={name: values[list(parents)] for name, values in result.segment_losses.items()},
        generators={k: result.generators[parents[k]] for k in projected if parents[k] in result.generators},
    )
