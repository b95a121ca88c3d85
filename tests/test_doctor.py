"""`python -m chunky doctor`: offline on the test model here; on the real weights where they can be fetched."""

import pytest

from chunky import doctor
from chunky.cli import main

STAGES = ("weights", "detection", "alignment", "parsing", "inversion", "directions", "identity")


def test_doctor_runs_end_to_end_on_the_test_model(capsys):
    code = main(["doctor", "--model", "tiny", "--faces", "2", "--steps", "2", "--size", "64"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = {line.split("  ")[0].strip(): line for line in out.splitlines()[2:-1]}
    assert "n/a (test mode: no downloads)" in lines["weights: registry"]
    assert "n/a (test mode: no face models)" in lines["detection: face 1"]
    assert "n/a (random weights)" in lines["parsing: face 0"] and "mouth row 0.72" in lines["parsing: face 0"]
    assert "n/a (random weights)" in lines["inversion: per-segment beats global"]
    assert "LPIPS per-segment" in lines["inversion: per-segment beats global"]
    # the GANSpace recipes run through the set-coordinate code path on a PCA of the test model
    assert "mean change in mouth" in lines["directions: smile"] and "n/a (random weights)" in lines["directions: smile"]
    assert lines["identity: same face"].split()[3] == "PASS"  # 1 - cos of a face with itself
    assert out.splitlines()[-1].startswith("1 passed, 0 failed")


def test_failures_make_the_exit_code_and_the_summary(monkeypatch, capsys):
    monkeypatch.setattr(
        doctor, "check_identity", lambda editor, images, real: [doctor.Check("identity", "x", doctor.FAIL)]
    )
    code = main(["doctor", "--model", "tiny", "--faces", "2", "--steps", "1", "--size", "32"])
    assert code == 1 and ", 1 failed," in capsys.readouterr().out


@pytest.fixture(scope="module")
def real_checks():
    from chunky.editor import ChunkyEditor

    return doctor.run(ChunkyEditor.from_pretrained(), real=True, faces=3, steps=100, size=256)


@pytest.mark.real_weights
@pytest.mark.parametrize("stage", STAGES)
def test_real_weights_stage_passes(real_checks, stage):
    found = [c for c in real_checks if c.group == stage]
    assert found, f"no {stage} checks ran"
    failed = [f"{c.name}: {c.detail}" for c in found if c.status == doctor.FAIL]
    assert not failed, failed
