"""What a Hugging Face Space needs to start as written: the card (README front matter) agrees with the pinned
Gradio, the weights' registry and their licences; its preloaded files are the ones the app fetches first; and
packages.txt installs every system library OpenCV loads (a Space image may lack libGL)."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chunky.weights import registry

ROOT = Path(__file__).resolve().parent.parent
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}  # in every Debian-based image
HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "a10g-small", "a10g-large", "zero-a10g"}


def card() -> dict:
    text = (ROOT / "README.md").read_text()
    return yaml.safe_load(text.split("---")[1])


def test_the_card_matches_the_pins_the_registry_and_the_licences():
    meta = card()
    pinned = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pinned and meta["app_file"] == "app.py"
    hub_entries = [entry for entry in registry().values() if entry.mirrors]
    assert meta["license"] != "mit" and any("non-commercial" in entry.license for entry in registry().values())
    assert set(meta["models"]) == {m.repo for entry in hub_entries for m in entry.mirrors}
    preloaded = set()
    for line in meta["preload_from_hub"]:
        repo, files = line.split()[:2]
        preloaded |= {(repo, name) for name in files.split(",")}
    first = {(entry.mirrors[0].repo, entry.mirrors[0].file) for entry in hub_entries}
    assert preloaded == first, "preload_from_hub must hold the first mirror of every Hub file the app fetches"
    assert meta["suggested_hardware"] in HARDWARE


@pytest.mark.skipif(shutil.which("dpkg-query") is None or shutil.which("ldd") is None, reason="needs dpkg and ldd")
def test_packages_txt_installs_every_system_library_opencv_loads():
    module = Path(importlib.util.find_spec("cv2").origin).parent
    binary = next(module.glob("cv2*.so"))
    linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    system = sorted({m for m in re.findall(r"=> (/\S+)", linked) if "site-packages" not in m})
    owners = {owner_of(path) for path in system}
    listed = set((ROOT / "packages.txt").read_text().split())
    provided = dependency_closure(listed | BASE_PACKAGES)
    missing = sorted(owners - provided)
    assert not missing, f"OpenCV loads libraries of {missing}, which packages.txt does not install"
    assert "libgl1" in owners  # the case that breaks a Space: cv2 (opencv-python, facexlib's) needs libGL.so.1


def owner_of(path: str) -> str:
    """The Debian package that installed ``path`` (tried as given and with /usr in front: merged /usr)."""
    for candidate in (path, str(Path(path).resolve()), "/usr" + path):
        found = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.split(":")[0].strip()
    raise AssertionError(f"no installed package owns {path}")


def dependency_closure(packages: set[str]) -> set[str]:
    """``packages`` and everything they depend on, as installed here (dpkg's own records; no apt lists)."""
    seen, todo = set(), list(packages)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        fields = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Depends},${Pre-Depends}", name], capture_output=True, text=True
        ).stdout
        for alternative in re.split(r"[,|]", fields):
            dependency = alternative.strip().split(" ")[0].split(":")[0]
            if dependency:
                todo.append(dependency)
    return seen
