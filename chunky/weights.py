"""The registry of downloadable files (``weights/registry.toml``) and the only code that downloads.

``fetch(name)`` returns a local path for a registered file: ``$CHUNKY_WEIGHTS_DIR/NAME`` when that
variable is set, else the first Hugging Face Hub mirror that delivers it (through the normal HF cache,
so a second call is offline). A pinned sha256 is checked. When nothing works, one
`WeightsUnavailableError` names the file, each mirror tried with its reason, and how to place the file
by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from chunky.errors import ChecksumError, InvalidInputError, WeightsUnavailableError

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "weights" / "registry.toml"
WEIGHTS_DIR_ENV = "CHUNKY_WEIGHTS_DIR"


@dataclass(frozen=True)
class Mirror:
    repo: str
    file: str
    revision: str = "main"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.file}"


@dataclass(frozen=True)
class WeightFile:
    name: str
    description: str
    license: str
    sha256: str
    mirrors: tuple[Mirror, ...]


@cache
def registry(path: Path = REGISTRY_PATH) -> dict[str, WeightFile]:
    """All registered files by name, read from ``weights/registry.toml``."""
    with open(path, "rb") as f:
        table = tomllib.load(f)
    return {
        name: WeightFile(name, entry["description"], entry["license"], entry.get("sha256", "").lower(),
                         tuple(Mirror(**m) for m in entry["mirrors"]))
        for name, entry in table.items()
    }


def lookup(name: str) -> WeightFile:
    try:
        return registry()[name]
    except KeyError:
        raise InvalidInputError(f"No weight file named {name!r} in the registry; known: {sorted(registry())}.") from None


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """Local path of registered file ``name``, downloading it on first use.

    Args:
        name: registry name, e.g. ``"stylegan2-ffhq-1024.pt"``.
        cache_dir: Hugging Face cache folder (default: the normal HF cache).

    Raises:
        WeightsUnavailableError: neither ``$CHUNKY_WEIGHTS_DIR`` nor any mirror has the file
            (offline, unreachable, or removed); the message says how to place it by hand.
        ChecksumError: the file does not match the registry's sha256.
    """
    entry = lookup(name)
    override = os.environ.get(WEIGHTS_DIR_ENV)
    if override:
        path = Path(override) / name
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{WEIGHTS_DIR_ENV} is set to {override!r} but {name!r} is not in it. Download it from "
                f"{entry.mirrors[0].url} and save it as {str(path)!r}, or unset {WEIGHTS_DIR_ENV} to use the Hub."
            )
        return _verified(path, entry)

    from huggingface_hub import hf_hub_download  # imported here: nothing else in chunky talks to the Hub

    failures = []
    for mirror in entry.mirrors:
        try:
            path = Path(hf_hub_download(mirror.repo, mirror.file, revision=mirror.revision, cache_dir=cache_dir))
        except (OSError, ValueError) as error:  # hub errors subclass these (HTTP, offline, missing entry)
            failures.append(f"{mirror.repo}/{mirror.file}: {type(error).__name__}")
            continue
        return _verified(path, entry)
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") else ""
    raise WeightsUnavailableError(
        f"Could not get weight file {name!r} ({entry.description}){offline}. Tried: {'; '.join(failures)}. "
        f"To place it by hand, download {entry.mirrors[0].url} on a connected machine, save it as "
        f"<folder>/{name} and set {WEIGHTS_DIR_ENV}=<folder>."
    )


def _verified(path: Path, entry: WeightFile) -> Path:
    if entry.sha256:
        actual = sha256_of(path)
        if actual != entry.sha256:
            raise ChecksumError(
                f"{str(path)!r} has sha256 {actual}, but the registry pins {entry.sha256} for {entry.name!r}. "
                "The file is corrupt or not the expected one: delete it and fetch again."
            )
    return path


def describe() -> str:
    """Where each registered file would come from on this machine, one line each."""
    override = os.environ.get(WEIGHTS_DIR_ENV)
    lines = []
    for entry in registry().values():
        source = f"{override}/{entry.name}" if override else " then ".join(m.url for m in entry.mirrors)
        lines.append(f"{entry.name}: {entry.description}\n  licence: {entry.license}\n  from: {source}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
