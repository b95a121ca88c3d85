"""Latent directions and edits of per-segment codes.

A `Direction` is a W+ offset [n_latent, style_dim] per unit of slider strength (rows outside its layer
range are zero). Edits move the codes of chosen segments along directions and re-render only those
segments; the others keep their renders, so pixels outside the edited segments do not change.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chunky.compositing import poisson_stitch, soft_composite
from chunky.errors import InvalidInputError
from chunky.generator import Generator
from chunky.images import resize_images
from chunky.inversion import Codes, InversionResult, render_codes, replace_rows, select_codes, select_rows, space_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Direction:
    """One editable attribute.

    Attributes:
        name: shown on the slider.
        vector: [n_latent, style_dim] W+ offset for strength 1.
        limits: sensible slider range (min, max).
        source: where it came from (file name, "PCA of W", ...).
    """

    name: str
    vector: torch.Tensor
    limits: tuple[float, float] = (-3.0, 3.0)
    source: str = ""


@torch.no_grad()
def pca_directions(G: Generator, count: int = 6, *, samples: int = 4096, seed: int = 0) -> list[Direction]:
    """GANSpace-style directions: the principal components of W (from ``samples`` seeded z), each scaled
    by its standard deviation and applied to every layer. Always available; named "Component k"."""
    z = torch.randn(samples, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(G.w_avg.device)
    w = G.mapping(z).double().cpu()
    centred = w - w.mean(0, keepdim=True)
    _, singular, components = torch.linalg.svd(centred, full_matrices=False)
    std = singular / (samples - 1) ** 0.5
    return [Direction(f"Component {k + 1}", (components[k] * std[k]).float().expand(G.n_latent, -1).clone(),
                      source="PCA of W") for k in range(min(count, G.style_dim))]


# GANSpace's published recipes for the FFHQ generator: name -> (component, first layer, end layer, slider limit).
# The direction adds strength * std[k] * comp[k] to W+ rows [first, end).
GANSPACE_RECIPES: dict[str, tuple[int, int, int, float]] = {
    "eye openness": (54, 7, 8, 20), "smile": (46, 4, 5, 20), "trimmed beard": (58, 7, 9, 20),
    "white hair": (57, 7, 10, 24), "lipstick": (34, 10, 11, 20), "age": (20, 6, 7, 8),
    "yaw": (1, 0, 18, 2), "gender": (0, 0, 18, 3), "glasses": (12, 0, 4, 10),
}


def ganspace_directions(pca: dict, G: Generator, recipes: dict = GANSPACE_RECIPES, source: str = "GANSpace") -> list[Direction]:
    """Directions from a GANSpace PCA of W ({"comp": [C, 1, D], "std": [C], "mean": [1, D]}) and recipes;
    recipes that do not fit ``G`` (component or layer out of range) are skipped."""
    comp = torch.as_tensor(pca["comp"]).float().reshape(len(pca["std"]), -1)
    std = torch.as_tensor(pca["std"]).float()
    if comp.shape[1] != G.style_dim:
        raise InvalidInputError(f"{source}: components are {comp.shape[1]}-d, this generator's W is {G.style_dim}-d.")
    directions = []
    for name, (k, first, end, limit) in recipes.items():
        if k >= len(std) or end > G.n_latent:
            continue
        vector = torch.zeros(G.n_latent, G.style_dim)
        vector[first:end] = comp[k] * std[k]
        directions.append(Direction(name, vector, (-float(limit), float(limit)), source))
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
    return Direction(path.stem.replace("_", " "), as_w_plus(array.float(), G, path.name), source=path.name)


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
    raise InvalidInputError(f"{name} has shape {list(vector.shape)}; this generator needs [{G.style_dim}] or "
                            f"[{G.n_latent}, {G.style_dim}].")


def combined_offset(directions: Sequence[Direction], strengths: Mapping[str, float], G: Generator) -> torch.Tensor:
    """Σ strength · direction: [n_latent, style_dim]."""
    by_name = {d.name: d for d in directions}
    unknown = sorted(set(strengths) - set(by_name))
    if unknown:
        raise InvalidInputError(f"Unknown directions {unknown}; available: {sorted(by_name)}.")
    offset = torch.zeros(G.n_latent, G.style_dim, device=G.w_avg.device)
    for name, strength in strengths.items():
        if strength:
            offset += float(strength) * by_name[name].vector.to(offset.device)
    return offset


def move_codes(G: Generator, codes: Codes, offset: torch.Tensor) -> Codes:
    """Codes moved by a W+ offset [n_latent, style_dim]: W codes become W+; S codes move by the affine
    modulation's linear part (exact, since each style is an affine function of its W+ row)."""
    if isinstance(codes, list):
        zero = torch.zeros(1, G.n_latent, G.style_dim, device=offset.device)
        with torch.no_grad():
            deltas = [a - b for a, b in zip(G.styles(offset[None]), G.styles(zero))]
        return [c + d[:, : c.shape[1]].to(c) for c, d in zip(codes, deltas)]
    if codes.ndim == 2:
        codes = codes[:, None].expand(-1, G.n_latent, -1)
    return codes + offset.to(codes)


@dataclass
class EditResult:
    """An edited composite. Attributes: codes (projected segments, after the edit), renders [K, 3, R, R],
    composite [1, 3, R, R], segments (indices that were edited)."""

    codes: Codes
    renders: torch.Tensor
    composite: torch.Tensor
    segments: list[int]


@torch.no_grad()
def apply_edit(G: Generator, result: InversionResult, directions: Sequence[Direction], strengths: Mapping[str, float],
               segments: Sequence[int] | None = None, *, resolution: int | None = None) -> EditResult:
    """Move the codes of ``segments`` (indices into ``result.masks``; None = every projected segment, the
    paper's "locally global" edit) along the directions and re-render only those segments.

    Args:
        resolution: render size (default: the result's); lower for a fast preview.

    Returns:
        EditResult; pixels outside the union of the edited segments' feathered masks equal the unedited
        composite's.
    """
    size = resolution or result.target.shape[-1]
    chosen = result.projected if segments is None else sorted(set(int(k) for k in segments))
    not_projected = [k for k in chosen if k not in result.projected]
    if not_projected:
        raise InvalidInputError(f"Segments {not_projected} were kept from the photo and have no code to edit.")
    offset = combined_offset(directions, strengths, G)
    rows = [result.projected.index(k) for k in chosen]
    # Only the chosen codes move (the others keep their value, in the same space as the moved ones).
    moved = replace_rows(move_codes(G, result.codes, torch.zeros_like(offset)), rows,
                         select_rows(move_codes(G, result.codes, offset), rows))
    renders = resize_images(result.renders, size).clone()
    for row, k in zip(rows, chosen):
        renders[k] = render_codes(G, select_codes(moved, slice(row, row + 1)), space_of(moved), size)[0].float()
    target, masks = resize_images(result.target, size), resize_images(result.masks, size)
    composite = soft_composite(renders, masks, target, keep=result.keep)
    return EditResult(codes=moved, renders=renders, composite=composite, segments=chosen)


def freeze(result: InversionResult, edit: EditResult) -> InversionResult:
    """The edited state as a new starting point (incremental editing): its composite becomes the target
    and the edited codes and renders become the result's, so later edits add to this one."""
    if edit.renders.shape[-1] != result.target.shape[-1]:
        raise InvalidInputError("Freeze a full-resolution edit, not a preview.")
    return dataclasses.replace(result, codes=edit.codes, target=edit.composite, renders=edit.renders,
                               composite=edit.composite, config=result.config.replace(space=space_of(edit.codes)))


@torch.no_grad()
def style_variations(G: Generator, result: InversionResult, segment: int, count: int = 4, *, seed: int = 0,
                     first_layer: int | None = None, truncation: float = 0.7) -> list[EditResult]:
    """Local style variation: ``count`` versions of one segment whose fine layers (W+ rows from
    ``first_layer``, default the last third) come from seeded random faces (style mixing); every other
    segment keeps its render, so pixels outside the segment's feathered mask do not change."""
    if segment not in result.projected:
        raise InvalidInputError(f"Segment {segment} was kept from the photo: there is no code to vary.")
    if isinstance(result.codes, list):
        raise InvalidInputError("Variations mix W+ layers: invert in W or W+ for them.")
    first = G.n_latent * 2 // 3 if first_layer is None else first_layer
    codes = result.codes if result.codes.ndim == 3 else result.codes[:, None].expand(-1, G.n_latent, -1)
    row = result.projected.index(segment)
    z = torch.randn(count, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(codes.device)
    donors = G.mapping(z, truncation_psi=truncation)
    size = result.target.shape[-1]
    variations = []
    for donor in donors:
        mixed = codes.clone()
        mixed[row, first:] = donor
        renders = result.renders.clone()
        renders[segment] = render_codes(G, mixed[row:row + 1], "w+", size)[0].float()
        composite = soft_composite(renders, result.masks, result.target, keep=result.keep)
        variations.append(EditResult(codes=mixed, renders=renders, composite=composite, segments=[segment]))
    return variations


def transfer_segment(result: InversionResult, reference: InversionResult, segment: int, reference_segment: int, *,
                     stitch: bool = True) -> EditResult:
    """Region transfer: put the reference photo's segment (e.g. its hair, rendered from its own code)
    into this photo.

    Both results must share the crop size (FFHQ-aligned faces line up). The target region is the union
    of the two segments, so new hair can cover old: inside it the segment takes the reference's mask and
    render; pixels of the old segment that the new one does not cover fall back to the photo. With
    ``stitch``, the new segment is Poisson-cloned into the composite to hide the seam.

    Returns:
        EditResult whose ``segments`` is [segment]; pixels outside the union of the two segments'
        feathered masks equal this result's composite.
    """
    if result.target.shape != reference.target.shape:
        raise InvalidInputError("Both photos must be aligned at the same size for a region transfer.")
    if space_of(result.codes) != space_of(reference.codes):
        raise InvalidInputError("Both photos must be inverted in the same latent space for a region transfer.")
    if segment in result.keep or reference_segment in reference.keep:
        raise InvalidInputError("The transferred segment must have been projected in both photos.")
    new_region = reference.masks[reference_segment:reference_segment + 1]
    masks = result.masks.clone()
    masks[:] = masks * (1 - new_region)  # the new segment takes its pixels from every segment ...
    masks[segment] = new_region[0]  # ... and the old segment shrinks to exactly the new one
    renders = result.renders.clone()
    renders[segment] = reference.renders[reference_segment]
    composite = soft_composite(renders, masks, result.target, keep=result.keep)
    if stitch:  # Poisson cloning works in 8 bits: keep the exact values outside the cloned region
        stitched = poisson_stitch(renders[segment:segment + 1], masks[segment:segment + 1], composite)
        composite = torch.where(masks[segment:segment + 1] > 0.5, stitched, composite)
    # the segment carries the reference's code, so later edits and freezes move the transferred segment
    codes = replace_rows(result.codes, [result.projected.index(segment)],
                         select_rows(reference.codes, [reference.projected.index(reference_segment)]))
    return EditResult(codes=codes, renders=renders, composite=composite, segments=[segment])
