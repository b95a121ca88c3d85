"""The registry of downloadable files (``weights/registry.toml``) and the only code that downloads.

``fetch(name)`` returns a local path for a registered file: ``$CHUNKY_WEIGHTS_DIR/NAME`` when that
variable is set; else the first Hugging Face Hub mirror that delivers it (through the normal HF cache,
so a second call is offline); else the first pinned URL that delivers bytes with the registry's sha256
(kept in ``$CHUNKY_DOWNLOADS_DIR``, default ``~/.cache/chunky/downloads``). A pinned sha256 is always
checked. When nothing works, one `WeightsUnavailableError` names the file, each source tried with its
reason, and how to place the file by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import tomllib
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from chunky.errors import ChecksumError, InvalidInputError, WeightsUnavailableError

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "weights" / "registry.toml"
WEIGHTS_DIR_ENV = "CHUNKY_WEIGHTS_DIR"
DOWNLOADS_DIR_ENV = "CHUNKY_DOWNLOADS_DIR"
URL_TIMEOUT_S = 20  # per connection attempt and per read: a dead host fails fast instead of hanging startup


@dataclass(frozen=True)
class Mirror:
    """A Hugging Face Hub location of a file. ``sha256``: this copy's own digest, where mirrors hold different
    bytes of the same weights (e.g. another conversion); empty means the entry's digest applies."""

    repo: str
    file: str
    revision: str = "main"
    sha256: str = ""

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.file}"


@dataclass(frozen=True)
class WeightFile:
    """One registered file. ``urls`` are plain HTTPS addresses at a pinned revision, tried after the Hub
    mirrors; they are only allowed with a pinned ``sha256`` (the digest, not the host, is what is trusted)."""

    name: str
    description: str
    license: str
    sha256: str
    mirrors: tuple[Mirror, ...]
    urls: tuple[str, ...] = ()
    bundled: str = ""

    def __post_init__(self):
        if not self.mirrors and not self.urls and not self.bundled:
            raise InvalidInputError(f"Registry entry {self.name!r} has no mirrors, no urls and no bundled file.")
        if (self.urls or self.bundled) and len(self.sha256) != 64:
            raise InvalidInputError(
                f"Registry entry {self.name!r} has urls or a bundled file but no pinned sha256 (64 hex digits)."
            )

    def digests(self) -> list[str]:
        """Every sha256 the registry pins for this file: the entry's and its mirrors' own (may be empty)."""
        found = [self.sha256] + [m.sha256 for m in self.mirrors]
        return list(dict.fromkeys(d for d in found if d))

    def source(self) -> str:
        """Where to download the file by hand."""
        if self.bundled:
            return str(REGISTRY_PATH.parent / self.bundled)
        return self.mirrors[0].url if self.mirrors else self.urls[0]


@cache
def registry(path: Path = REGISTRY_PATH) -> dict[str, WeightFile]:
    """All registered files by name, read from ``weights/registry.toml``."""
    with open(path, "rb") as f:
        table = tomllib.load(f)
    return {
        name: WeightFile(
            name,
            entry["description"],
            entry["license"],
            entry.get("sha256", "").lower(),
            tuple(Mirror(**{**m, "sha256": m.get("sha256", "").lower()}) for m in entry.get("mirrors", ())),
            tuple(entry.get("urls", ())),
            entry.get("bundled", ""),
        )
        for name, entry in table.items()
    }


def lookup(name: str) -> WeightFile:
    try:
        return registry()[name]
    except KeyError:
        raise InvalidInputError(
            f"No weight file named {name!r} in the registry; known: {sorted(registry())}."
        ) from None


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
        WeightsUnavailableError: neither ``$CHUNKY_WEIGHTS_DIR`` nor any source has the file (offline,
            unreachable, removed, or only wrong bytes); the message says how to place it by hand.
        ChecksumError: the file in ``$CHUNKY_WEIGHTS_DIR`` or from a Hub mirror does not match the
            registry's sha256.
    """
    return fetch_entry(lookup(name), cache_dir=cache_dir)


def fetch_entry(entry: WeightFile, *, cache_dir: str | Path | None = None) -> Path:
    """`fetch` for a registry entry."""
    name = entry.name
    if entry.bundled:  # shipped in weights/ with the code: never downloaded, always checked
        path = REGISTRY_PATH.parent / entry.bundled
        if not path.is_file():
            raise WeightsUnavailableError(
                f"The bundled file {str(path)!r} ({entry.description}) is missing from this "
                "checkout: restore it with `git checkout -- weights/`."
            )
        return _verified(path, entry)
    override = os.environ.get(WEIGHTS_DIR_ENV)
    if override:
        path = Path(override) / name
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{WEIGHTS_DIR_ENV} is set to {override!r} but {name!r} is not in it. Download it from "
                f"{entry.source()} and save it as {str(path)!r}, or unset {WEIGHTS_DIR_ENV} to use the Hub."
            )
        return _verified(path, entry)

    failures = []
    if entry.mirrors:
        from huggingface_hub import hf_hub_download  # imported here: only this module talks to the Hub

        for mirror in entry.mirrors:
            try:
                path = Path(
                    hf_hub_download(
                        mirror.repo,
                        mirror.file,
                        revision=mirror.revision,
                        cache_dir=cache_dir,
                        local_files_only=_offline(),
                    )
                )
            except (OSError, ValueError) as error:  # hub errors subclass these (HTTP, offline, missing entry)
                failures.append(f"{mirror.repo}/{mirror.file}: {type(error).__name__}")
                continue
            return _verified(path, entry, mirror.sha256 or entry.sha256)
    if entry.urls:
        path = _from_urls(entry, failures)
        if path is not None:
            return path
    offline = ""
    if _hub_unreachable:
        offline = " (the Hugging Face Hub could not be reached from this machine)"
    elif _offline():
        offline = " (HF_HUB_OFFLINE is set)"
    raise WeightsUnavailableError(
        f"Could not get weight file {name!r} ({entry.description}){offline}. Tried: {'; '.join(failures)}. "
        f"To place it by hand, download {entry.source()} on a connected machine, save it as "
        f"<folder>/{name} and set {WEIGHTS_DIR_ENV}=<folder>."
    )


def downloads_dir() -> Path:
    """Where files fetched from plain URLs are kept: ``$CHUNKY_DOWNLOADS_DIR`` (default
    ``~/.cache/chunky/downloads``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chunky" / "downloads"
    return Path(os.environ.get(DOWNLOADS_DIR_ENV, default))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


_hub_unreachable = False  # set by `work_offline`: the Hub check failed, nobody asked for offline mode


def work_offline() -> None:
    """Use cached files only from now on (HF_HUB_OFFLINE), because `hub_reachable` said no: a missing file then
    fails at once, and its message says the Hub could not be reached (not that someone set the variable)."""
    global _hub_unreachable
    _hub_unreachable = True
    os.environ["HF_HUB_OFFLINE"] = "1"


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick check (a TCP connection to the Hub's host, at most ``timeout`` seconds) of whether downloads
    can work at all, so a machine without network learns it at once instead of after minutes of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_urls(entry: WeightFile, failures: list[str]) -> Path | None:
    """The entry's file from its pinned URLs: the kept copy when its digest matches, else the first URL whose
    bytes have the pinned digest (written to a temporary file and renamed, so no partial file remains)."""
    folder = downloads_dir()
    path = folder / entry.name
    if path.is_file():
        if sha256_of(path) == entry.sha256:
            return path
        path.unlink()  # an older or damaged copy: fetch it again
    if _offline():
        failures.extend(f"{url}: offline" for url in entry.urls)
        return None
    for url in entry.urls:
        temporary = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with (
                urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response,
                tempfile.NamedTemporaryFile(dir=folder, prefix=f".{entry.name}.", delete=False) as out,
            ):
                temporary = Path(out.name)
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != entry.sha256:
                failures.append(f"{url}: sha256 {digest.hexdigest()[:16]}… is not the pinned {entry.sha256[:16]}…")
                continue
            os.replace(temporary, path)
            temporary = None
            log.info("downloaded %s from %s", entry.name, url)
            return path
        except (OSError, ValueError) as error:  # URLError/HTTPError/timeouts/disk full are OSErrors
            failures.append(f"{url}: {type(error).__name__} ({error})")
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
    return None


def _verified(path: Path, entry: WeightFile, expected: str | None = None) -> Path:
    """``path`` when its sha256 is ``expected`` (default: any digest the entry pins, its own or a mirror's);
    a file with no pinned digest is accepted as it is."""
    pinned = [expected] if expected else entry.digests()
    if pinned:
        actual = sha256_of(path)
        if actual not in pinned:
            raise ChecksumError(
                f"{str(path)!r} has sha256 {actual}, but the registry pins {' or '.join(pinned)} for {entry.name!r}. "
                "The file is corrupt or not the expected one: delete it and fetch again (or download it again from "
                f"{entry.source()})."
            )
    return path


def describe() -> str:
    """Where each registered file would come from on this machine, one line each."""
    override = os.environ.get(WEIGHTS_DIR_ENV)
    lines = []
    for entry in registry().values():
        if entry.bundled:
            source = f"{entry.source()} (bundled, no download)"
        elif override:
            source = f"{override}/{entry.name}"
        else:
            source = " then ".join([m.url for m in entry.mirrors] + list(entry.urls))
        lines.append(f"{entry.name}: {entry.description}\n  licence: {entry.license}\n  from: {source}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
