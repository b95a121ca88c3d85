"""The direction library: every latent direction the sliders offer.

A `Direction` is usually a W+ offset [n_latent, style_dim] per unit of slider strength (rows outside its
layer range are zero). A GANSpace recipe is different: as published, it *sets* the code's coordinate
along a principal component (`SetCoordinate`), so its offset depends on the code it moves.

Sources: the published files for the FFHQ-1024 generator (``weights/directions.toml``, fetched through
the registry with pinned sha256), GANSpace PCA files with their published recipes, user files dropped
in a folder, and two kinds computed from the generator itself (always available): the
principal components of W and the closed-form factorisation of the coarse modulation weights.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chunky.errors import ChecksumError, InvalidInputError, WeightsUnavailableError
from chunky.generator import Generator
from chunky.weights import fetch

log = logging.getLogger(__name__)

DIRECTIONS_PATH = Path(__file__).resolve().parent.parent / "weights" / "directions.toml"


@dataclass(frozen=True)
class SetCoordinate:
    """GANSpace's published edit: on W+ rows [first, end), move the code along the unit principal
    component ``comp`` [style_dim] until its coordinate ((w - mean) . comp) / std reaches ``strength``
    (in standard deviations), i.e. add (strength - coordinate) * comp * std to each of those rows.

    Slider value t in [-1, 1]: the coordinate c of each row moves to c + |t| (sign(t) * strength - c).
    At 0 nothing moves; at +1 it is ``strength`` (from the mean code: exactly the published edit);
    at -1 it is -strength (the opposite attribute); in between it moves linearly."""

    comp: torch.Tensor  # [style_dim], unit length
    std: float
    mean: torch.Tensor  # [style_dim]
    first: int
    end: int
    strength: float

    def coordinate(self, w_plus: torch.Tensor) -> torch.Tensor:
        """[P, end - first] coordinates (std units) of W+ codes [P, n_latent, style_dim] on the recipe's rows."""
        rows = w_plus[:, self.first : self.end].float()
        return (rows - self.mean.to(rows)) @ self.comp.to(rows) / self.std

    def offset(self, w_plus: torch.Tensor, t: float) -> torch.Tensor:
        """[P, n_latent, style_dim] offset that moves each code [P, n_latent, style_dim] for slider value ``t``."""
        goal = self.strength if t > 0 else -self.strength
        step = abs(t) * (goal - self.coordinate(w_plus))  # [P, rows]
        offset = torch.zeros_like(w_plus, dtype=torch.float32)
        offset[:, self.first : self.end] = step[..., None] * self.comp.to(offset) * self.std
        return offset


@dataclass(frozen=True)
class Direction:
    """One editable attribute.

    Attributes:
        name: shown on the slider.
        vector: [n_latent, style_dim] W+ offset for strength 1 (for a ``setpoint`` direction: the axis it
            moves along, comp * std on its rows).
        limits: sensible slider range (min, max); (-1, 1) for a ``setpoint`` direction.
        source: where it came from (file name, "PCA of W", ...).
        group: the slider group it is shown in ("Components", "InterFaceGAN", "Your files", ...).
        setpoint: for a GANSpace recipe, the published set-coordinate edit (the offset then depends on
            the code); None for a constant offset.
    """

    name: str
    vector: torch.Tensor
    limits: tuple[float, float] = (-3.0, 3.0)
    source: str = ""
    group: str = ""
    setpoint: SetCoordinate | None = None

    def offset(self, w_plus: torch.Tensor, strength: float) -> torch.Tensor:
        """The [P, n_latent, style_dim] offset for codes ``w_plus`` [P, n_latent, style_dim] at slider value
        ``strength``."""
        if self.setpoint is not None:
            return self.setpoint.offset(w_plus, float(strength))
        return float(strength) * self.vector.to(w_plus.device, torch.float32).expand(w_plus.shape[0], -1, -1)


@torch.no_grad()
def pca_directions(G: Generator, count: int = 6, *, samples: int = 4096, seed: int = 0) -> list[Direction]:
    """GANSpace-style directions: the principal components of W (from ``samples`` seeded z), each scaled
    by its standard deviation and applied to every layer. Always available; named "Component k"."""
    centred = _w_samples(G, samples, seed)
    _, singular, components = torch.linalg.svd(centred, full_matrices=False)
    std = singular / (samples - 1) ** 0.5
    return [
        Direction(
            f"Component {k + 1}",
            (components[k] * std[k]).float().expand(G.n_latent, -1).clone(),
            source="PCA of W",
            group="Components",
        )
        for k in range(min(count, G.style_dim))
    ]


@torch.no_grad()
def factor_directions(
    G: Generator, count: int = 4, *, rows: int = 4, samples: int = 4096, seed: int = 0
) -> list[Direction]:
    """Closed-form factorisation (SeFa): the top eigenvectors of AᵀA, where A stacks the modulation weights
    of the layers fed by the first ``rows`` W+ rows (the coarse layers: pose, face shape). Each moves those
    rows only and is scaled by the standard deviation of W along it, so a strength of 1 is one typical
    step, as for the PCA components. Always available; named "Factor k"."""
    rows = min(rows, G.n_latent)
    weights = [
        layer.modulation.weight * layer.modulation.scale for row, layer in G.modulated_layers(None) if row < rows
    ]
    stacked = torch.cat(weights).double().cpu()  # [sum of channels, style_dim]
    eigenvalues, eigenvectors = torch.linalg.eigh(stacked.T @ stacked)  # ascending
    factors = eigenvectors.flip(1).T[:count]  # [count, style_dim], unit length
    std = (_w_samples(G, samples, seed) @ factors.T).std(dim=0)
    directions = []
    for k, (factor, spread) in enumerate(zip(factors, std)):
        vector = torch.zeros(G.n_latent, G.style_dim)
        vector[:rows] = (factor * spread).float()
        directions.append(Direction(f"Factor {k + 1}", vector, source="closed-form factorisation", group="Components"))
    return directions


def _w_samples(G: Generator, samples: int, seed: int) -> torch.Tensor:
    """[samples, style_dim] float64 w from seeded z, centred on their mean."""
    z = torch.randn(samples, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(G.w_avg.device)
    w = G.mapping(z).double().cpu()
    return w - w.mean(0, keepdim=True)


# GANSpace's published recipes for the StyleGAN2 FFHQ generator in W (harskish/ganspace,
# notebooks/figure_teaser.ipynb; encoder4editing's notebook copies the first five):
# name -> (component, first W+ row, end row, strength). Each sets the coordinate along its component to
# `strength` std on rows [first, end) (`SetCoordinate`). Names as published, "_" shown as " ".
GANSPACE_RECIPES: dict[str, tuple[int, int, int, float]] = {
    "eye openness": (54, 7, 8, 20),
    "smile": (46, 4, 5, -20),
    "trimmed beard": (58, 7, 9, 20),
    "white hair": (57, 7, 10, -24),
    "lipstick": (34, 10, 11, 20),
    "wrinkles": (20, 6, 7, -18),
    "bald": (21, 2, 5, 20),
    "head angle up": (11, 1, 4, 20),
    "eyebrow thickness": (37, 8, 9, 20),
}


def ganspace_directions(
    pca: dict,
    G: Generator,
    recipes: dict = GANSPACE_RECIPES,
    source: str = "GANSpace",
    *,
    group: str = "Your files",
    label: str = "{}",
) -> list[Direction]:
    """Directions from a GANSpace PCA of W ({"comp": [C, 1, D], "std": [C], "mean": [1, D]}) and recipes,
    named ``label.format(recipe name)``, each a `SetCoordinate` edit with slider limits (-1, 1); recipes
    that do not fit ``G`` (component or layer out of range) are skipped."""
    comp = torch.as_tensor(pca["comp"]).float().reshape(len(pca["std"]), -1)
    std = torch.as_tensor(pca["std"]).float()
    mean = torch.as_tensor(pca.get("mean", torch.zeros(comp.shape[1]))).float().reshape(-1)
    if comp.shape[1] != G.style_dim or mean.shape[0] != G.style_dim:
        raise InvalidInputError(f"{source}: components are {comp.shape[1]}-d, this generator's W is {G.style_dim}-d.")
    if not all(torch.isfinite(t).all() for t in (comp, std, mean)):
        raise InvalidInputError(f"{source} holds NaN or infinite values; it cannot be used as directions.")
    directions = []
    for name, (k, first, end, strength) in recipes.items():
        if k >= len(std) or end > G.n_latent:
            continue
        unit = comp[k] / comp[k].norm()
        vector = torch.zeros(G.n_latent, G.style_dim)
        vector[first:end] = unit * std[k]
        setpoint = SetCoordinate(unit, float(std[k]), mean, first, end, float(strength))
        directions.append(Direction(label.format(name), vector, (-1.0, 1.0), source, group, setpoint))
    return directions


def load_direction_file(path: str | Path, G: Generator) -> Direction:
    """A direction from a file: .npy ([style_dim], [1, style_dim] or [n_latent, style_dim]) or .pt (a tensor
    of those shapes, [1, n_latent, style_dim] included; loaded with ``weights_only=True``).

    Its raw length is kept (published directions are meant for strengths of a few units)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            array = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        elif path.suffix in (".pt", ".pth"):
            array = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise InvalidInputError(f"{path.name}: directions are .npy or .pt files.")
    except InvalidInputError:
        raise
    except Exception as error:  # any unpickling or format failure: the file is not a plain array
        raise InvalidInputError(f"{path.name} is not a direction file this code can read safely ({error}).") from None
    if not isinstance(array, torch.Tensor):
        raise InvalidInputError(f"{path.name} holds a {type(array).__name__}, not one direction tensor.")
    if not torch.isfinite(array.float()).all():
        raise InvalidInputError(f"{path.name} holds NaN or infinite values; it cannot be used as a direction.")
    return Direction(
        path.stem.replace("_", " "), as_w_plus(array.float(), G, path.name), source=path.name, group="Your files"
    )


def load_direction_folder(folder: str | Path, G: Generator) -> list[Direction]:
    """Every readable direction file in ``folder`` that fits ``G``; the others are logged and skipped."""
    directions = []
    for path in sorted(Path(folder).glob("*")):
        if path.suffix not in (".npy", ".pt", ".pth"):
            continue
        try:
            pca = _ganspace_pca(path)
            directions.extend(ganspace_directions(pca, G, source=path.name) if pca else [load_direction_file(path, G)])
        except InvalidInputError as error:
            log.warning("skipped direction %s: %s", path.name, error)
    return directions


def _ganspace_pca(path: Path) -> dict | None:
    """The GANSpace PCA dict in a .pt file, or None when the file holds something else."""
    if path.suffix not in (".pt", ".pth"):
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a safe plain file: load_direction_file reports it
        return None
    return content if isinstance(content, dict) and {"comp", "std"} <= set(content) else None


def as_w_plus(vector: torch.Tensor, G: Generator, name: str = "direction") -> torch.Tensor:
    """[style_dim], [1, style_dim], [n_latent, style_dim] or [1, n_latent, style_dim] -> [n_latent, style_dim]."""
    v = vector.squeeze(0) if vector.ndim == 3 and vector.shape[0] == 1 else vector
    if v.ndim == 2 and v.shape[0] == 1:
        v = v[0]
    if v.ndim == 1 and v.shape[0] == G.style_dim:
        return v.expand(G.n_latent, -1).clone()
    if v.shape == (G.n_latent, G.style_dim):
        return v.clone()
    raise InvalidInputError(
        f"{name} has shape {list(vector.shape)}; this generator needs [{G.style_dim}] or [{G.n_latent}, {G.style_dim}]."
    )


def published_directions(G: Generator, generator: str, *, table: str | Path = DIRECTIONS_PATH) -> list[Direction]:
    """The published directions for registry generator ``generator`` (``weights/directions.toml``), fetched
    through the registry (pinned URLs, sha256 checked; a second call is offline).

    Files are pinned by commit, so when one cannot be fetched the rest would fail the same way: fetching
    stops there, with a warning naming the reason, and the directions found so far are returned."""
    with open(table, "rb") as f:
        entries = [e for e in tomllib.load(f).get("direction", []) if e["generator"] == generator]
    directions, paths = [], {}
    for entry in entries:
        name = entry["file"]
        if name not in paths:
            try:
                paths[name] = fetch(name)
            except (WeightsUnavailableError, ChecksumError) as error:
                log.warning("published directions are not available, the sliders offer fewer: %s", error)
                break
        try:
            directions.extend(_published(entry, paths[name], G))
        except InvalidInputError as error:
            log.warning("skipped published direction %s: %s", entry.get("name", name), error)
    return directions


def _published(entry: dict, path: Path, G: Generator) -> list[Direction]:
    """The directions one ``directions.toml`` entry describes."""
    group = entry["group"]
    if entry.get("format") == "ganspace":
        pca = _ganspace_pca(path)
        if pca is None:
            raise InvalidInputError(f"{path.name} is not a GANSpace PCA file.")
        return ganspace_directions(pca, G, source=entry["file"], group=group, label=f"{{}} ({group})")
    first, end = entry["layers"]
    if not 0 <= first < end <= G.n_latent:
        raise InvalidInputError(f"layers [{first}, {end}) do not fit this generator's {G.n_latent} W+ rows.")
    vector = load_direction_file(path, G).vector
    vector[:first], vector[end:] = 0, 0
    low, high = entry["limits"]
    return [Direction(entry["name"], vector, (float(low), float(high)), entry["file"], group)]
