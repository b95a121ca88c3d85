"""Inversion results as plain data (dicts of tensors, numbers and strings, safe for ``weights_only`` loading),
and the fingerprint that names the generator they were made with. The inversion cache and the work file both
store results this way."""

from __future__ import annotations

import dataclasses
import hashlib

from chunky.config import InversionConfig
from chunky.generator import Generator
from chunky.inversion import InversionResult


def generator_fingerprint(G: Generator) -> str:
    """sha256 of the generator's tensors (computed once per generator object)."""
    cached = getattr(G, "_chunky_fingerprint", None)
    if cached is None:
        digest = hashlib.sha256()
        for name, tensor in G.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        cached = digest.hexdigest()
        G._chunky_fingerprint = cached
    return cached


def result_to_dict(result: InversionResult) -> dict:
    """An inversion as plain data (fine-tuned generators as state dicts with their ``latent_avg``)."""
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "generators"}
    data["config"] = dataclasses.asdict(result.config)
    data["generators"] = {
        int(k): {"g_ema": g.state_dict(), "latent_avg": g.w_avg.detach().cpu()} for k, g in result.generators.items()
    }
    return data


def result_from_dict(data: dict) -> InversionResult:
    """The inverse of `result_to_dict` (unknown config keys from newer files are ignored)."""
    data = dict(data)
    known = {f.name for f in dataclasses.fields(InversionConfig)}
    data["config"] = InversionConfig(**{k: v for k, v in data["config"].items() if k in known})
    data["generators"] = {int(k): Generator.from_checkpoint(v) for k, v in data.get("generators", {}).items()}
    return InversionResult(**data)
