"""Content-addressed disk cache of inversion results, the one stateful piece of chunky.

Key: sha256 of the target and mask bytes, the config, the kept segments, the initial codes and the
generator's identity. Entries are written atomically (temp file + rename), read with
``weights_only=True``, touched on every hit, and the least recently used are evicted past
``max_bytes``. A corrupt entry is deleted and reported as a miss; a failed write (disk full) leaves the
cache as it was. File names are hashes only: nothing from user input reaches a path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from chunky.config import InversionConfig
from chunky.generator import Generator
from chunky.inversion import Codes, InversionResult, invert
from chunky.records import generator_fingerprint, result_from_dict, result_to_dict

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # entries of another version are discarded


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return str((t.dtype, tuple(t.shape))).encode() + t.detach().float().cpu().contiguous().numpy().tobytes()


def inversion_key(
    G: Generator,
    target: torch.Tensor,
    masks: torch.Tensor | None,
    config: InversionConfig,
    keep: Sequence[int] = (),
    init: Codes | None = None,
) -> str:
    """The cache key of one `invert` call (hex sha256)."""
    digest = hashlib.sha256()
    for part in (
        generator_fingerprint(G).encode(),
        config.to_json().encode(),
        repr(sorted(keep)).encode(),
        _tensor_bytes(target),
    ):
        digest.update(part)
    digest.update(b"no masks" if masks is None else _tensor_bytes(masks))
    for code in [] if init is None else init if isinstance(init, list) else [init]:
        digest.update(_tensor_bytes(code))
    return digest.hexdigest()


class InversionCache:
    """Args:
    directory: folder for the entries (created on demand).
    max_bytes: total size kept; least recently used entries go first.
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = 2 << 30):
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def get(self, key: str, *, expect: Callable[[InversionResult], str | None] | None = None) -> InversionResult | None:
        """The stored result, or None. An entry that cannot be read, has another format version, or that
        ``expect`` (a check returning what is wrong, or None) refuses is deleted: the caller recomputes it."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if data.pop("cache_version", None) != CACHE_VERSION:
                raise ValueError(f"not cache format {CACHE_VERSION}")
            result = result_from_dict(data)
            problem = expect(result) if expect is not None else None
            if problem:
                raise ValueError(problem)
        except Exception as error:  # any unreadable or wrong entry is a miss, never a crash
            log.warning("discarding cache entry %s (%s: %s)", path.name, type(error).__name__, error)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # mark as recently used
        return result

    def put(self, key: str, result: InversionResult) -> None:
        # fine-tuned generators are never part of an inversion's answer (they come later, per session)
        data = result_to_dict(dataclasses.replace(result, generators={})) | {"cache_version": CACHE_VERSION}
        temp: Path | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, suffix=".tmp", delete=False) as f:
                temp = Path(f.name)
                torch.save(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self._path(key))
        except OSError as error:  # disk full, read-only folder: the cache stays as it was
            log.warning("could not write cache entry (%s); continuing without caching", error)
            if temp is not None:
                temp.unlink(missing_ok=True)
            return
        self._evict()

    def _evict(self) -> None:
        entries = sorted(self.directory.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for path in entries:
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)


def cached_invert(
    G: Generator,
    target: torch.Tensor,
    masks: torch.Tensor | None = None,
    *,
    cache: InversionCache,
    config: InversionConfig = InversionConfig(),
    keep: Sequence[int] = (),
    init: Codes | None = None,
    **kwargs,
) -> InversionResult:
    """`invert`, answered from ``cache`` when the same call was made before (an entry that does not fit the
    request is discarded and recomputed). Cancelled runs are not stored."""
    key = inversion_key(G, target, masks, config, keep, init)
    hit = cache.get(key, expect=lambda r: mismatch(r, target, masks, config, keep))
    if hit is not None:
        return hit
    result = invert(G, target, masks, config=config, keep=keep, init=init, **kwargs)
    if not result.cancelled:
        cache.put(key, result)
    return result


def mismatch(
    result: InversionResult,
    target: torch.Tensor,
    masks: torch.Tensor | None,
    config: InversionConfig,
    keep: Sequence[int],
) -> str | None:
    """What makes ``result`` not an answer to this request (shapes, kept segments, config), or None."""
    count = 1 if masks is None else masks.shape[0]
    codes = result.codes if isinstance(result.codes, list) else [result.codes]
    checks = {
        "target shape": result.target.shape == target.shape,
        "mask shape": masks is None or result.masks.shape == masks.shape,
        "renders shape": result.renders.shape == (count, 3, *target.shape[-2:]),
        "composite shape": result.composite.shape == target.shape,
        "kept segments": sorted(result.keep) == sorted(keep)
        and sorted(result.projected + result.keep) == list(range(count)),
        "code rows": all(c.shape[0] == len(result.projected) for c in codes),
        "config": result.config == config,
    }
    wrong = [name for name, ok in checks.items() if not ok]
    return f"wrong {', '.join(wrong)}" if wrong else None
