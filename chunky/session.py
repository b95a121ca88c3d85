"""One user's work in progress: the photo, its segments, the inversion, the current edit and the undo
history. The app keeps one `Session` per browser tab (in `gr.State`); nothing here is shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from chunky.align import AlignedFace
from chunky.editing import EditResult, freeze
from chunky.errors import InvalidInputError
from chunky.images import tensor_to_uint8
from chunky.inversion import InversionResult
from chunky.segmentation import Segmentation


@dataclass
class Session:
    """Attributes:
        aligned: the photo and its aligned crop.
        automatic: the segments found automatically (for "reset").
        segmentation: the segments as corrected by the user.
        result: the current inversion (after freezes, the frozen state).
        edit: the current (unfrozen) edit of ``result``, if any.
        history: earlier results, for undo.
        baselines: global inversions for comparison ({"W": ..., "W+": ...}).
        variations: the last style variations offered (choosing one makes it the current edit).
        cancel: set to stop a running inversion.
    """

    aligned: AlignedFace
    automatic: Segmentation
    segmentation: Segmentation
    result: InversionResult | None = None
    edit: EditResult | None = None
    history: list[InversionResult] = field(default_factory=list)
    baselines: dict[str, InversionResult] = field(default_factory=dict)
    variations: list[EditResult] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def require_result(self) -> InversionResult:
        if self.result is None:
            raise InvalidInputError("Run the inversion first.")
        return self.result

    def set_result(self, result: InversionResult) -> None:
        """A new inversion replaces everything edited so far."""
        self.result, self.edit, self.history = result, None, []

    def freeze(self, then: Callable[[InversionResult], InversionResult] | None = None) -> None:
        """Make the current edit the new starting point (undo goes back).

        ``then`` (e.g. re-projecting some segments) is applied to the frozen result before it is adopted;
        if it fails, the session is unchanged."""
        result = self.require_result()
        if self.edit is None:
            raise InvalidInputError("There is no edit to freeze: move a slider first.")
        frozen = freeze(result, self.edit)
        if then is not None:
            frozen = then(frozen)
        self.history.append(result)
        self.result, self.edit = frozen, None

    def require_no_edit(self) -> None:
        if self.edit is not None:
            raise InvalidInputError("Freeze or undo the current edit first.")

    def step_to(self, result: InversionResult) -> None:
        """Adopt ``result``, derived from the current one without an edit (e.g. fine-tuned); undo goes back."""
        self.require_no_edit()
        self.history.append(self.require_result())
        self.result = result

    def undo(self) -> None:
        """Drop the current edit, or, with none, go back to the state before the last freeze."""
        if self.edit is not None:
            self.edit = None
        elif self.history:
            self.result = self.history.pop()
        else:
            raise InvalidInputError("Nothing to undo.")

    def current(self) -> np.ndarray:
        """[S, S, 3] uint8: the edited composite, else the inversion's composite."""
        if self.edit is not None:
            return tensor_to_uint8(self.edit.composite)
        return tensor_to_uint8(self.require_result().composite)
