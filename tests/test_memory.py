"""Memory per session is bounded: in a fresh process, sessions at a 256 px work size go through many
inversions, edits, freezes and fine-tunes; after every action the session's own accounting stays under the
budget the README states (state + history budget + fine-tuned copies + photo), and the process grows by
less than that budget per session."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, random, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.generator import random_generator
from chunky.session import HISTORY_BYTES, MAX_TUNED_GENERATORS, Session, state_tensors

def rss():
    import ctypes, gc
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so RSS shows what is really held
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

generator = random_generator(256, 32, 2, seed=0)
editor = ChunkyEditor(generator, device="cpu", pretrained_perceptual=False, face_models=False)
generator_bytes = sum(t.numel() * t.element_size() for t in editor.generator.state_dict().values())
config = InversionConfig(steps=1, perceptual="none", resolution=64)
direction = editor.directions()[0].name
warm = Session.start(editor, editor.random_face(9, resolution=64), skip_alignment=True, size=256)
warm.invert(config)  # first-use allocations (directions, thread pools) are not a session's
del warm
rng, worst, budget, start = random.Random(0), 0, 0, rss()
sessions = []
for k in range(3):
    photo = np.repeat(np.repeat(editor.random_face(k, resolution=64), 4, 0), 4, 1)
    s = Session.start(editor, photo, skip_alignment=True, size=256)
    sessions.append(s)
    for step in range(30):
        if s.state.result is None or step % 10 == 0:
            s.invert(config, baselines=step == 0)
        s.set_edit({direction: rng.choice([1.0, 2.0, -1.5])}, ["skin", "hair"][: rng.randint(1, 2)])
        if step % 2:
            s.freeze(["nose"] if step % 3 == 0 else [], steps=1)
        if step in (5, 15):
            s.tune(["hair" if step == 5 else "eyes"], steps=1)
        state = sum(t.untyped_storage().nbytes() for t in state_tensors(s.state))
        tuned_bytes = MAX_TUNED_GENERATORS * generator_bytes
        budget = 2 * state + HISTORY_BYTES + tuned_bytes + s.aligned.photo_bytes() + (1 << 20)
        worst = max(worst, s.memory_bytes() / budget)
        assert s.memory_bytes() <= budget, (k, step, s.memory_bytes(), budget)
report = {
    "accounted": sum(s.memory_bytes() for s in sessions),
    "worst_share_of_budget": worst,
    "budget": budget,
    "grown": rss() - start,
    "sessions": len(sessions),
    "history_steps": [len(s.history) for s in sessions],
}
print(json.dumps(report))
"""


def test_sessions_stay_within_their_memory_budget():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["worst_share_of_budget"] <= 1.0
    assert report["grown"] < report["sessions"] * report["budget"], report
