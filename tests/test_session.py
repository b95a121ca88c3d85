"""The session is the one owner of a user's work: long random action sequences keep it consistent.

After every action of 200 seeded random sequences: names, masks and codes line up; the photo and crop
are bit-identical to what was loaded; the displayed image is the composite re-rendered from the recorded
codes and strengths; a failed action changes nothing; undo restores exactly the previous state; export
then re-open gives identical images, codes and names.
"""

import os
import random

import numpy as np
import pytest
import torch

from chunky.compositing import soft_composite
from chunky.config import InversionConfig
from chunky.editing import apply_edit
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError
from chunky.export import export_session
from chunky.generator import random_generator
from chunky.images import tensor_to_uint8
from chunky.inversion import render_codes, select_codes, space_of
from chunky.session import Session
from chunky.workfile import read_work
from tests.conftest import held_by_a_long_job

SEQUENCES, ACTIONS = int(os.environ.get("CHUNKY_WALKS", "200")), 8
FAST = InversionConfig(steps=2, perceptual="none", resolution=32, dilate_px=2)


@pytest.fixture(scope="module")
def editor():
    return ChunkyEditor(
        random_generator(32, 32, 2, seed=3), device="cpu", pretrained_perceptual=False, face_models=False, label="test"
    )


def face(editor, seed) -> np.ndarray:
    """A 64 px photo (the reader's smallest) of a random face of the 32 px test generator."""
    return np.repeat(np.repeat(editor.random_face(seed), 2, axis=0), 2, axis=1)


def check_invariants(s: Session, photo: np.ndarray, crop: np.ndarray) -> None:
    state = s.state
    assert np.array_equal(s.aligned.photo(), photo) and np.array_equal(s.aligned.crop, crop)
    K = len(state.names)
    assert state.segmentation.masks.shape[0] == K and len(set(state.names)) == K
    result = state.result
    if result is None:
        assert state.edit is None and s.display() is None
        return
    assert torch.equal(result.masks, state.segmentation.masks)
    assert sorted(result.projected + result.keep) == list(range(K)) and not set(result.projected) & set(result.keep)
    codes = result.codes
    rows = codes[0].shape[0] if isinstance(codes, list) else codes.shape[0]
    assert rows == len(result.projected) and result.renders.shape[0] == K
    assert set(state.targets) <= set(state.names)
    G, size = s.editor.generator, result.target.shape[-1]
    with torch.no_grad():  # every render is its segment's code, rendered again now
        for row, k in enumerate(result.projected):
            again = render_codes(
                result.generator_for(k, G), select_codes(codes, slice(row, row + 1)), space_of(codes), size
            )
            assert torch.allclose(again[0], result.renders[k], atol=1e-5), f"render of {state.names[k]} is stale"
        for k in result.keep:
            assert torch.equal(result.renders[k], result.target[0])
    assert torch.allclose(
        result.composite,
        soft_composite(
            result.renders, result.masks, result.target, keep=result.keep, dilate_px=result.config.dilate_px
        ),
        atol=1e-6,
    )
    shown = s.display()
    if state.strengths:
        targets = [k for k in (state.names.index(n) for n in state.targets) if k in result.projected] or None
        edit = apply_edit(G, result, s.editor.directions(), dict(state.strengths), targets)
        assert np.array_equal(shown, tensor_to_uint8(edit.composite))
    else:
        assert state.edit is None and np.array_equal(shown, tensor_to_uint8(result.composite))


def random_action(s: Session, rng: random.Random, reference: np.ndarray):
    names, directions = list(s.names), [d.name for d in s.editor.directions()]
    actions = {
        "invert": lambda: s.invert(
            FAST.replace(space=rng.choice(["w", "w+"])),
            keep=rng.choice([("background",), ()]),
            baselines=rng.random() < 0.2,
        ),
        "edit": lambda: s.set_edit(
            {rng.choice(directions): rng.choice([-2.0, 1.0, 3.0]) for _ in range(rng.randint(0, 2))},
            rng.sample(names, rng.randint(0, 2)),
        ),
        "freeze": lambda: s.freeze(rng.sample(names, rng.randint(0, 1)), steps=2),
        "refine": s.refine,
        "merge": lambda: s.merge(rng.sample(names, min(len(names), 2))),
        "split": lambda: s.split(rng.choice(names)),
        "sketch": lambda: s.sketch(rng.choice(names), [sketch_layer(rng)], erase=rng.random() < 0.3),
        "reset": s.reset_segments,
        "variation": lambda: (s.variations(rng.choice(names), seed=rng.randint(0, 9), count=2), s.choose_variation(1)),
        "transfer": lambda: s.transfer(reference, rng.choice(["hair", "skin", "eyes"]), skip_alignment=True),
        "tune": lambda: s.tune([rng.choice(names)] * 2, steps=1),
        "undo": s.undo,
    }
    weights = {"invert": 3, "edit": 4, "undo": 3}
    name = rng.choices(list(actions), [weights.get(a, 1) for a in actions])[0]
    return name, actions[name]


def sketch_layer(rng: random.Random) -> np.ndarray:
    layer = np.zeros((48, 48, 4), np.uint8)  # another size than the segments': scaled like a browser layer
    top, left = rng.randint(0, 40), rng.randint(0, 40)
    layer[top : top + 8, left : left + 8] = 255
    return layer


def test_random_action_sequences_keep_the_session_consistent(editor, tmp_path):
    rng = random.Random(0)
    counts = {"ok": 0, "refused": 0, "undo checked": 0, "reopened": 0}
    for sequence in range(SEQUENCES):
        photo = face(editor, sequence % 5)
        s = Session.start(editor, photo, skip_alignment=True)
        crop = s.aligned.crop.copy()
        reference = face(editor, 50 + sequence % 3)
        if rng.random() < 0.7:  # most walks start from an inversion, to get deeper into editing
            s.invert(FAST)
        for _ in range(ACTIONS):
            before, before_len, before_shown = s.state, len(s.history), s.display()
            name, action = random_action(s, rng, reference)
            try:
                action()
                counts["ok"] += 1
            except InvalidInputError:  # refused: nothing changed
                counts["refused"] += 1
                assert s.state is before and len(s.history) == before_len, f"refused {name} changed the session"
            try:
                check_invariants(s, photo, crop)
            except AssertionError as error:
                raise AssertionError(f"after {name} (sequence {sequence}): {error}") from None
            if name != "undo" and s.state is not before and rng.random() < 0.5:
                undone = s.state
                s.undo()
                assert s.state is before and len(s.history) == before_len
                assert (before_shown is None and s.display() is None) or np.array_equal(s.display(), before_shown)
                counts["undo checked"] += 1
                s.history.append(s.state)  # redo, to keep walking from the new state
                s.state = undone
        if sequence % 10 == 0:
            if s.state.result is None:
                s.invert(FAST)
            export_session(s, tmp_path / f"e{sequence}")
            again = read_work(editor, tmp_path / f"e{sequence}" / "work.pt")
            assert again.names == s.names and np.array_equal(again.display(), s.display())
            assert np.array_equal(again.aligned.crop, s.aligned.crop) and np.array_equal(again.aligned.photo(), photo)
            codes = (again.state.edit or again.state.result).codes, (s.state.edit or s.state.result).codes
            assert all(torch.equal(a, b) for a, b in zip(*codes)) if isinstance(codes[0], list) else torch.equal(*codes)
            counts["reopened"] += 1
    # the walk really exercised both outcomes and the checks
    assert (
        counts["ok"] > 600 and counts["refused"] > 20 and counts["undo checked"] > 200 and counts["reopened"] == 20
    ), counts


def test_merge_then_edit_moves_the_merged_segment_only(editor):
    s = Session.start(editor, face(editor, 1), skip_alignment=True)
    s.invert(FAST)
    codes_before = s.state.result.codes.clone()
    brows_row = s.state.result.projected.index(s.names.index("brows"))
    s.merge(["eyes", "nose"])
    assert "eyes+nose" in s.names and "eyes" not in s.names
    brows = s.names.index("brows")
    assert torch.equal(s.state.result.codes[s.state.result.projected.index(brows)], codes_before[brows_row])
    direction = editor.directions()[0].name
    s.set_edit({direction: 3.0}, ["eyes+nose"])
    assert s.state.edit.segments == [s.names.index("eyes+nose")]
    moved = s.state.edit.renders[brows] - s.state.result.renders[brows]
    assert moved.abs().max() == 0  # the brows did not change


def test_photo_is_never_overwritten_by_freeze_and_undo_brings_the_edit_back(editor):
    photo = face(editor, 2)
    s = Session.start(editor, photo, skip_alignment=True)
    crop = s.aligned.crop.copy()
    s.invert(FAST)
    target_before = s.state.result.target.clone()
    s.set_edit({editor.directions()[0].name: 3.0})
    edited = s.display()
    s.freeze()
    assert np.array_equal(s.aligned.crop, crop) and np.array_equal(s.aligned.photo(), photo)
    assert not torch.equal(s.state.result.target, target_before)  # the frozen edit is the new target ...
    assert np.array_equal(tensor_to_uint8(s.state.result.target), edited)  # ... beside the photo
    s.undo()
    assert s.state.action == "edit" and np.array_equal(s.display(), edited)


def test_nan_strength_and_unknown_names_are_refused_and_change_nothing(editor):
    s = Session.start(editor, face(editor, 1), skip_alignment=True)
    s.invert(FAST)
    state = s.state
    with pytest.raises(InvalidInputError, match="must be a finite number"):
        s.set_edit({editor.directions()[0].name: float("nan")})
    with pytest.raises(InvalidInputError, match="no segment named 'tail'"):
        s.set_edit({editor.directions()[0].name: 1.0}, ["tail"])
    with pytest.raises(InvalidInputError, match="two different segments"):
        s.merge(["skin", "skin"])
    assert s.state is state


def test_actions_never_interleave_a_short_one_is_refused_while_a_long_one_runs(editor):
    """(A short action waits for another short one: see the browser test's typed value + Export.)"""
    s = Session.start(editor, face(editor, 1), skip_alignment=True)
    with held_by_a_long_job(s), pytest.raises(InvalidInputError, match="previous action is still running"):
        with s.acting():
            pass
    with s.acting():  # free again
        pass


def test_a_large_photo_kept_encoded_in_memory_round_trips_through_the_work_file(editor, tmp_path, monkeypatch):
    import chunky.images
    import chunky.workfile
    from chunky.export import export_session
    from chunky.workfile import read_work

    photo = np.repeat(np.repeat(editor.random_face(6), 4, axis=0), 4, axis=1)  # 128 x 128
    s = Session.start(editor, photo, skip_alignment=True)
    s.aligned = s.aligned.compact(max_bytes=1)  # kept PNG-encoded, as a large photo is
    s.invert(FAST)
    limit = len(s.aligned.original.png) - 1  # the PNG kept in memory is over the reader's limit
    monkeypatch.setattr(chunky.workfile, "MAX_FILE_BYTES", limit)
    monkeypatch.setattr(chunky.images, "MAX_FILE_BYTES", limit)
    export_session(s, tmp_path / "out")
    again = read_work(editor, tmp_path / "out" / "work.pt")
    assert np.array_equal(again.aligned.photo(), photo) and np.array_equal(again.display(), s.display())


def test_variations_can_be_compared_one_after_another_in_one_undo_step(editor):
    s = Session.start(editor, face(editor, 1), skip_alignment=True)
    s.invert(FAST)
    before, depth = s.state, len(s.history)
    offers = s.variations("hair", seed=1, count=3)
    s.choose_variation(0)
    first = s.display()
    s.choose_variation(2)  # another offer replaces the adopted one
    assert np.array_equal(s.display(), offers[2]) and not np.array_equal(first, offers[2])
    assert len(s.history) == depth + 1  # one step: Undo goes back to before the variations
    s.undo()
    assert s.state is before
    s.invert(FAST)  # a new inversion: the offers belong to an earlier state
    with pytest.raises(InvalidInputError, match="earlier state"):
        s.choose_variation(1)


def test_a_transfer_of_a_segment_the_photo_no_longer_has_is_refused_before_any_work(editor):
    s = Session.start(editor, face(editor, 1), skip_alignment=True)
    s.invert(FAST)
    s.merge(["eyes", "nose"])
    before = s.state
    with pytest.raises(InvalidInputError, match="no segment 'eyes' now; its segments: .*eyes\\+nose"):
        s.transfer(np.zeros((1, 1, 3), np.uint8), "eyes", skip_alignment=True)  # not even the photo is read
    assert s.state is before
