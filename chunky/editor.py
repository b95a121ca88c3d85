"""`ChunkyEditor`: the facade the app, the CLI and the README use. It owns the models and the device;
the algorithms live in their own modules.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from chunky.device import PRECISIONS, autocast, default_device
from chunky.errors import InvalidInputError
from chunky.generator import Generator, random_generator
from chunky.images import tensor_to_uint8

log = logging.getLogger(__name__)


class ChunkyEditor:
    """Everything a user session needs, built once and shared read-only between sessions.

    Args:
        generator: a loaded `Generator` (moved to ``device``).
        device: where to compute (default: the GPU when usable, else the CPU).
        precision: "fp32" or "bf16" for rendering.
        label: a short description shown to users (e.g. which model is loaded).
    """

    def __init__(self, generator: Generator, *, device: torch.device | str | None = None, precision: str = "fp32",
                 label: str = ""):
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        self.device = torch.device(device) if device is not None else default_device()
        self.generator = generator.to(self.device)
        self.precision = precision
        self.label = label

    @classmethod
    def from_pretrained(cls, name: str = "stylegan2-ffhq-1024.pt", *, cache_dir: str | Path | None = None,
                        device: torch.device | str | None = None, precision: str = "fp32") -> "ChunkyEditor":
        """The real FFHQ model, fetched from the Hugging Face Hub on first use (see ``weights/``)."""
        generator = Generator.from_pretrained(name, cache_dir=cache_dir)
        return cls(generator, device=device, precision=precision, label=f"StyleGAN2 {name}")

    @classmethod
    def tiny(cls, seed: int = 0) -> "ChunkyEditor":
        """Test mode: a tiny random 64 px generator; no downloads. Its faces are noise, not faces."""
        generator = random_generator(64, 64, 2, seed=seed)
        return cls(generator, device="cpu", label="TEST MODE: tiny random model (outputs are not faces)")

    @torch.no_grad()
    def random_face(self, seed: int, *, truncation: float = 0.7, resolution: int | None = None) -> np.ndarray:
        """A synthetic face sampled from the generator: [R, R, 3] uint8.

        Args:
            seed: picks z from a local RNG; the same seed always gives the same face.
            truncation: psi in [0, 1]; lower is more typical, higher more varied.
            resolution: output size (power of two up to the generator's size; default full size).
        """
        if not 0.0 <= truncation <= 1.0:
            raise InvalidInputError(f"truncation must be in [0, 1], got {truncation}.")
        G = self.generator
        z = torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(int(seed))).to(self.device)
        with autocast(self.precision, self.device):
            image = G.synthesis(G.mapping(z, truncation_psi=truncation), resolution=resolution)
        return tensor_to_uint8(image.float())
