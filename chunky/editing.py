"""Edits of per-segment codes: moves along directions (`chunky.directions`), freezing, style
variations and region transfer.

Edits move the codes of chosen segments and re-render only those segments; the others keep their
renders, so pixels outside the edited segments do not change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from chunky.compositing import poisson_stitch, soft_composite
from chunky.directions import Direction
from chunky.errors import InvalidInputError
from chunky.generator import Generator
from chunky.images import resize_images
from chunky.inversion import Codes, InversionResult, render_codes, replace_rows, select_codes, select_rows, space_of


def combined_offset(
    directions: Sequence[Direction], strengths: Mapping[str, float], G: Generator, w_plus: torch.Tensor | None = None
) -> torch.Tensor:
    """Σ of each direction's offset at its slider value, for codes ``w_plus`` [P, n_latent, style_dim]:
    [P, n_latent, style_dim]. A GANSpace recipe's offset depends on the code (it sets a coordinate;
    `chunky.directions.SetCoordinate`), a plain direction's is strength * vector. Without ``w_plus``
    the codes are taken to be the mean code (w_avg on every row) and the result is [n_latent, style_dim]."""
    by_name = {d.name: d for d in directions}
    unknown = sorted(set(strengths) - set(by_name))
    if unknown:
        raise InvalidInputError(f"Unknown directions {unknown}; available: {sorted(by_name)}.")
    codes = w_plus if w_plus is not None else G.w_avg.reshape(1, 1, -1).expand(1, G.n_latent, -1)
    offset = torch.zeros(codes.shape, device=codes.device)
    for name, strength in strengths.items():
        if strength:
            offset += by_name[name].offset(codes, float(strength)).to(offset.device)
    return offset if w_plus is not None else offset[0]


def move_codes(G: Generator, codes: Codes, offset: torch.Tensor) -> Codes:
    """Codes moved by a W+ offset ([n_latent, style_dim] for all, or [P, n_latent, style_dim] one per code):
    W codes become W+; S codes move by the affine modulation's linear part (exact, since each style is
    an affine function of its W+ row)."""
    if isinstance(codes, list):
        offset = offset if offset.ndim == 3 else offset[None]
        zero = torch.zeros(1, G.n_latent, G.style_dim, device=offset.device)
        with torch.no_grad():
            deltas = [a - b for a, b in zip(G.styles(offset), G.styles(zero))]
        return [c + d[:, : c.shape[1]].to(c) for c, d in zip(codes, deltas)]
    if codes.ndim == 2:
        codes = codes[:, None].expand(-1, G.n_latent, -1)
    return codes + offset.to(codes)


@torch.no_grad()
def w_plus_of(G: Generator, codes: Codes) -> torch.Tensor:
    """W+ codes [P, n_latent, style_dim] of W, W+ or S codes. S codes are mapped back row by row: the
    least-squares w of each W+ row's modulations (exact where a row feeds at least style_dim channels,
    as on every row of the FFHQ generator up to 64 px)."""
    if not isinstance(codes, list):
        return codes[:, None].expand(-1, G.n_latent, -1) if codes.ndim == 2 else codes
    rows = torch.zeros(codes[0].shape[0], G.n_latent, G.style_dim, dtype=torch.float64, device=codes[0].device)
    layers = G.modulated_layers(None)
    with torch.autocast(rows.device.type, enabled=False):  # least squares in float64, never in bf16
        for row in range(G.n_latent):
            _fit_row(rows, row, [(layer.modulation, style) for (r, layer), style in zip(layers, codes) if r == row])
    return rows.float()


def _fit_row(rows: torch.Tensor, row: int, picked: list) -> None:
    """rows[:, row] = the least-squares w whose modulations give the styles in ``picked`` [(modulation, [P, C])]."""
    if not picked:
        return
    eye = torch.eye(rows.shape[-1], device=rows.device)
    bias = torch.cat([m(torch.zeros_like(eye[:1])) for m, _ in picked], dim=1).double()  # [1, C]
    linear = torch.cat([m(eye) for m, _ in picked], dim=1).double() - bias  # [D, C]
    styles = torch.cat([s.float() for _, s in picked], dim=1).double() - bias  # [P, C]
    rows[:, row] = torch.linalg.lstsq(linear.T, styles.T).solution.T


@dataclass
class EditResult:
    """An edited composite. Attributes: codes (projected segments, after the edit), renders [K, 3, R, R],
    composite [1, 3, R, R], segments (indices that were edited), generators (segment -> the fine-tuned
    generator that renders it, as in `InversionResult.generators`), masks ([K, 1, R, R] when the edit
    changed the segments' masks, as a region transfer does; None otherwise)."""

    codes: Codes
    renders: torch.Tensor
    composite: torch.Tensor
    segments: list[int]
    generators: dict[int, Generator] = dataclasses.field(default_factory=dict)
    masks: torch.Tensor | None = None


@torch.no_grad()
def apply_edit(
    G: Generator,
    result: InversionResult,
    directions: Sequence[Direction],
    strengths: Mapping[str, float],
    segments: Sequence[int] | None = None,
    *,
    resolution: int | None = None,
) -> EditResult:
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
    rows = [result.projected.index(k) for k in chosen]
    chosen_codes = select_rows(result.codes, rows)
    offset = combined_offset(directions, strengths, G, w_plus_of(G, chosen_codes))  # [len(rows), n_latent, D]
    # Only the chosen codes move (the others keep their value, in the same space as the moved ones).
    moved = replace_rows(
        move_codes(G, result.codes, torch.zeros_like(offset[0])), rows, move_codes(G, chosen_codes, offset)
    )
    renders = resize_images(result.renders, size).clone()
    for row, k in zip(rows, chosen):
        renders[k] = render_codes(
            result.generator_for(k, G), select_codes(moved, slice(row, row + 1)), space_of(moved), size
        )[0].float()
    target, masks = resize_images(result.target, size), resize_images(result.masks, size)
    dilate_px = round(result.config.dilate_px * size / result.target.shape[-1])  # in pixels at ``size``
    composite = soft_composite(renders, masks, target, keep=result.keep, dilate_px=dilate_px)
    return EditResult(codes=moved, renders=renders, composite=composite, segments=chosen, generators=result.generators)


def freeze(result: InversionResult, edit: EditResult) -> InversionResult:
    """The edited state as a new starting point (incremental editing): its composite becomes the target
    and the edited codes and renders become the result's, so later edits add to this one.

    The frozen composite is composited again from the renders over the new target, so the result stays
    a function of its renders, masks and target (it differs from the edit's composite only where a kept
    segment's feathered edge blends, which now blends over the edit)."""
    if edit.renders.shape[-1] != result.target.shape[-1]:
        raise InvalidInputError("Freeze a full-resolution edit, not a preview.")
    renders = edit.renders.clone()
    renders[result.keep] = edit.composite[0]  # a kept segment's render is its target
    composite = result.composite_of(renders, target=edit.composite)
    return dataclasses.replace(
        result,
        codes=edit.codes,
        target=edit.composite,
        renders=renders,
        composite=composite,
        config=result.config.replace(space=space_of(edit.codes)),
        generators=edit.generators,
    )


@torch.no_grad()
def style_variations(
    G: Generator,
    result: InversionResult,
    segment: int,
    count: int = 4,
    *,
    seed: int = 0,
    first_layer: int | None = None,
    truncation: float = 0.7,
) -> list[EditResult]:
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
        renders[segment] = render_codes(result.generator_for(segment, G), mixed[row : row + 1], "w+", size)[0].float()
        composite = soft_composite(
            renders, result.masks, result.target, keep=result.keep, dilate_px=result.config.dilate_px
        )
        variations.append(
            EditResult(
                codes=mixed, renders=renders, composite=composite, segments=[segment], generators=result.generators
            )
        )
    return variations


def transfer_segment(
    result: InversionResult, reference: InversionResult, segment: int, reference_segment: int, *, stitch: bool = True
) -> EditResult:
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
    new_region = reference.masks[reference_segment : reference_segment + 1]
    masks = result.masks.clone()
    masks[:] = masks * (1 - new_region)  # the new segment takes its pixels from every segment ...
    masks[segment] = new_region[0]  # ... and the old segment shrinks to exactly the new one
    renders = result.renders.clone()
    renders[segment] = reference.renders[reference_segment]
    composite = soft_composite(renders, masks, result.target, keep=result.keep, dilate_px=result.config.dilate_px)
    if stitch:  # Poisson cloning works in 8 bits: keep the exact values outside the cloned region
        stitched = poisson_stitch(renders[segment : segment + 1], masks[segment : segment + 1], composite)
        composite = torch.where(masks[segment : segment + 1] > 0.5, stitched, composite)
    # the segment carries the reference's code, so later edits and freezes move the transferred segment
    codes = replace_rows(
        result.codes,
        [result.projected.index(segment)],
        select_rows(reference.codes, [reference.projected.index(reference_segment)]),
    )
    # ... and renders as in the reference: with the reference's fine-tuned generator, if it has one
    generators = {k: g for k, g in result.generators.items() if k != segment}
    if reference_segment in reference.generators:
        generators[segment] = reference.generators[reference_segment]
    return EditResult(
        codes=codes, renders=renders, composite=composite, segments=[segment], generators=generators, masks=masks
    )
