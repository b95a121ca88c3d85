"""Crafted work files are refused before anything is built from them, each with its own message; honest files of
every kind (W, W+, S codes, fine-tuned generators, edits, baselines) still open."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.session import Session
from chunky.workcheck import WorkFileError
from chunky.workfile import read_work, write_work

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def editor():
    return ChunkyEditor.tiny()


@pytest.fixture(scope="module")
def honest(editor, tmp_path_factory):
    """A real work file: inverted (W+, with the global baselines), tuned on one segment, edited."""
    s = Session.start(editor, editor.random_face(3), skip_alignment=True)
    s.invert(InversionConfig(steps=2, perceptual="none"), baselines=True)
    s.tune(["hair"], steps=1)
    s.set_edit({editor.directions()[0].name: 1.5}, ["mouth"])
    path = write_work(s, tmp_path_factory.mktemp("work") / "work.pt")
    return torch.load(path, weights_only=True)


def crafted(tmp_path, data, change) -> Path:
    """``data`` with ``change`` applied to a copy, saved as a work file."""
    copy = torch.load(_saved(tmp_path / "copy.pt", data), weights_only=True)
    change(copy)
    return _saved(tmp_path / "crafted.pt", copy)


def _saved(path: Path, data) -> Path:
    torch.save(data, path)
    return path


def stride_zero_masks(d):
    d["masks"] = torch.zeros(1).expand(8, 1, 8000, 8000)


def remove(key):
    return lambda d: d.pop(key)


CASES = {  # what is wrong -> (how the file is changed, words the message must contain)
    "stride-0 masks": (stride_zero_masks, "masks (8x1x8000x8000) is a view that repeats or overruns its stored data"),
    "repeating view": (
        lambda d: d.update(crop=torch.zeros(1, dtype=torch.uint8).expand(64, 64, 3)),
        "crop (64x64x3) is a view that repeats or overruns its stored data",
    ),
    "matrix shape": (lambda d: d.update(matrix=torch.eye(3, dtype=torch.float64)), "matrix is 3x3; expected the 2 x 3"),
    "singular matrix": (lambda d: d.update(matrix=torch.zeros(2, 3, dtype=torch.float64)), "cannot be inverted"),
    "NaN codes": (lambda d: d["result"]["codes"].fill_(float("nan")), "result: codes holds values that are not finite"),
    "NaN masks": (lambda d: d["masks"].fill_(float("nan")), "masks holds values that are not finite"),
    "masks above 1": (lambda d: d["masks"].mul_(3), "masks must lie in [0.0, 1.0]"),
    "no result key": (remove("result"), "the file lacks 'result'"),
    "photo as a tensor": (lambda d: d.update(photo_png=torch.zeros(3)), "the photo must be image file bytes"),
    "masks at 4x": (
        lambda d: d.update(masks=torch.zeros(8, 1, 256, 256)),
        "masks are 8x1x256x256, but the work has 8 segments on a 64x64 crop",
    ),
    "2-D crop": (
        lambda d: d.update(crop=torch.zeros(64, 64, dtype=torch.uint8)),
        "crop must have 3 dimensions, got 2",
    ),
    "renders shape": (lambda d: d["result"].update(renders=torch.zeros(8, 3, 32, 32)), "renders is 8x3x32x32"),
    "codes for 2 segments": (
        lambda d: d["result"].update(codes=d["result"]["codes"][:2].clone()),
        "codes are 2x10x64; expected",
    ),
    "segment 99": (lambda d: d["result"].update(projected=[99]), "projected must list segment numbers from 0 to 7"),
    "segment twice": (lambda d: d["result"].update(keep=[d["result"]["projected"][0]]), "listed twice"),
    "unknown target": (lambda d: d.update(targets=["tail"]), "targets must be segment names of this work"),
    "NaN strength": (lambda d: d["strengths"].update({"x": float("nan")}), "must be a finite number"),
    "wrong tuned generator": (
        lambda d: next(iter(d["result"]["generators"].values()))["g_ema"].popitem(),
        "fine-tuned generator of segment",
    ),
    "bad baseline": (
        lambda d: d["baselines"]["global W+"].update(target=torch.zeros(1, 3, 8, 8)),
        "the baseline 'global W+': target is 1x3x8x8",
    ),
    "bad config": (lambda d: d["result"]["config"].update(steps=-4), "InversionConfig.steps must be"),
    "text for a list": (lambda d: d.update(names="skin"), "names must be a list of segment names"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_crafted_work_file_is_refused_with_its_own_message(case, editor, honest, tmp_path):
    change, words = CASES[case]
    path = crafted(tmp_path, honest, change)
    with pytest.raises(WorkFileError) as refused:
        read_work(editor, path)
    assert words in str(refused.value), str(refused.value)
    assert str(refused.value).startswith("crafted.pt: ")


def test_honest_work_files_of_every_kind_still_open(editor, honest, tmp_path):
    s = read_work(editor, _saved(tmp_path / "work.pt", honest))
    assert s.state.result.generators and s.state.edit is not None and len(s.state.baselines) == 2
    for space in ("w", "s"):
        t = Session.start(editor, editor.random_face(5), skip_alignment=True)
        t.invert(InversionConfig(steps=1, space=space, perceptual="none"))
        again = read_work(editor, write_work(t, tmp_path / f"{space}.pt"))
        assert torch.equal(again.state.result.composite, t.state.result.composite)


MEMORY_SCRIPT = """
import resource, sys, time, torch
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.session import Session
from chunky.workfile import read_work, write_work
editor = ChunkyEditor.tiny()
s = Session.start(editor, editor.random_face(3), skip_alignment=True)
s.invert(InversionConfig(steps=1, perceptual="none"))
data = torch.load(write_work(s, sys.argv[1]), weights_only=True)
data["masks"] = torch.zeros(1).expand(8, 1, 8000, 8000)
torch.save(data, sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    read_work(editor, sys.argv[1])
except Exception as error:
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(type(error).__name__, time.perf_counter() - start, grown)
"""


def test_a_stride_zero_work_file_is_refused_in_bounded_time_and_memory(tmp_path):
    """8 x 8000 x 8000 float32 masks "stored" in 4 bytes: refused in under 2 s, peak memory up by under 100 MB."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "work.pt")], cwd=ROOT, capture_output=True, text=True
    )
    kind, seconds, grown_kib = done.stdout.split()
    assert kind == "WorkFileError", done.stderr[-2000:]
    assert float(seconds) < 2.0 and int(grown_kib) < 100 * 1024, (seconds, grown_kib)
