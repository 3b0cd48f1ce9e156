"""Apply a fixed-size image function to images of any size: overlapping tiles blended without seams.

A model that works at one resolution (RestoreVAR's token grid: ``R x R`` images) restores a larger image tile
by tile. Tiles of ``tile x tile`` pixels are laid out along each axis with at least ``overlap`` pixels shared by
neighbours, spread evenly so that the first tile starts at 0 and the last one ends at the border. Each output
tile is weighted by a separable window that rises as a raised cosine (Hann half-window) over the ``overlap``
pixels next to an edge shared with a neighbour, and is 1 elsewhere (also along the image border); the blended
image is the weighted sum divided by the summed weights. Where two tiles overlap by exactly ``overlap`` pixels
the two windows sum to 1, so the output fades from one tile to the next instead of jumping at a cut.

An image smaller than a tile along an axis is padded (reflection, or edge replication when it is too small to
reflect) to the tile size and the output cropped back.
"""
import math

import torch
import torch.nn.functional as F


def tile_starts(length, tile, overlap):
    """First pixels of the tiles covering ``[0, length)`` along one axis.

    Args:
        length (int): Image side, ``>= tile``.
        tile (int): Tile side.
        overlap (int): Minimum overlap of neighbouring tiles, ``0 <= overlap < tile``.

    Returns:
        list[int]: Increasing starts, ``starts[0] == 0`` and ``starts[-1] == length - tile``; neighbours overlap
        by at least ``overlap`` pixels (as evenly as integer positions allow).
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def tile_count(height, width, tile, overlap):
    """Number of ``tile x tile`` crops :func:`tiled_apply` cuts from one ``height x width`` image."""
    return len(tile_starts(max(height, tile), tile, overlap)) * len(tile_starts(max(width, tile), tile, overlap))


def edge_ramp(overlap, dtype=torch.float32):
    """The raised-cosine rise over ``overlap`` pixels: ``0.5 - 0.5 cos(pi (i + 0.5) / overlap)``, in (0, 1).

    ``ramp[i] + ramp[overlap - 1 - i] == 1``, so a rising and a falling ramp over the same pixels sum to 1.
    """
    positions = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
    return (0.5 - 0.5 * torch.cos(math.pi * positions)).to(dtype)


def axis_window(tile, overlap, rise, fall):
    """The 1-D weights ``(tile,)`` of a tile: a ramp of ``overlap`` pixels at the start (``rise``) and the end
    (``fall``) when that side is shared with a neighbour, 1 elsewhere."""
    window = torch.ones(tile)
    width = min(overlap, tile // 2)
    if width:
        ramp = edge_ramp(width)
        if rise:
            window[:width] = ramp
        if fall:
            window[tile - width:] = ramp.flip(0)
    return window


def _pad_to(images, height, width):
    pad_h, pad_w = height - images.shape[-2], width - images.shape[-1]
    if not pad_h and not pad_w:
        return images
    can_reflect = pad_h < images.shape[-2] and pad_w < images.shape[-1]
    return F.pad(images, (0, pad_w, 0, pad_h), mode='reflect' if can_reflect else 'replicate')


def tiled_apply(function, images, tile, overlap, batch_size=1):
    """``function`` on overlapping ``tile x tile`` crops of ``images``, blended back to the images' size.

    Args:
        function (Callable[[Tensor], Tensor]): Maps ``(N, C, tile, tile)`` to ``(N, C_out, tile, tile)``.
        images (Tensor): ``(B, C, H, W)``, any ``H`` and ``W``.
        tile (int): Tile side (positive).
        overlap (int): Minimum overlap of neighbouring tiles and width of the blending ramps, ``0 <= overlap < tile``.
        batch_size (int): Crops per call of ``function`` (crops of several images share a call).

    Returns:
        Tensor: ``(B, C_out, H, W)`` float32 on the device ``function`` returns.

    Raises:
        ValueError: ``tile``, ``overlap`` or ``batch_size`` out of range, or ``images`` not 4-D.
    """
    if images.dim() != 4:
        raise ValueError(f'tiled_apply: images must be (B, C, H, W); got shape {tuple(images.shape)}')
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f'tiled_apply: need tile > 0 and 0 <= overlap < tile; got tile {tile}, overlap {overlap}')
    if batch_size <= 0:
        raise ValueError(f'tiled_apply: batch_size must be positive; got {batch_size}')
    height, width = images.shape[-2:]
    padded = _pad_to(images, max(height, tile), max(width, tile))
    rows = tile_starts(padded.shape[-2], tile, overlap)
    cols = tile_starts(padded.shape[-1], tile, overlap)
    row_windows = [axis_window(tile, overlap, index > 0, index < len(rows) - 1) for index in range(len(rows))]
    col_windows = [axis_window(tile, overlap, index > 0, index < len(cols) - 1) for index in range(len(cols))]
    crops = [(b, r, c) for b in range(images.shape[0]) for r in range(len(rows)) for c in range(len(cols))]
    total = weights = None
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size]
        inputs = torch.stack([padded[b, :, rows[r]:rows[r] + tile, cols[c]:cols[c] + tile] for b, r, c in chunk])
        outputs = function(inputs).float()
        if outputs.shape[0] != len(chunk) or outputs.shape[-2:] != (tile, tile):
            raise ValueError(f'tiled_apply: function returned {tuple(outputs.shape)} for crops '
                             f'{tuple(inputs.shape)}; expected the same batch and spatial size')
        if total is None:
            shape = (images.shape[0], outputs.shape[1], *padded.shape[-2:])
            total = torch.zeros(shape, device=outputs.device)
            weights = torch.zeros((images.shape[0], 1, *padded.shape[-2:]), device=outputs.device)
        for output, (b, r, c) in zip(outputs, chunk):
            window = torch.outer(row_windows[r], col_windows[c]).to(outputs.device)
            total[b, :, rows[r]:rows[r] + tile, cols[c]:cols[c] + tile] += output * window
            weights[b, :, rows[r]:rows[r] + tile, cols[c]:cols[c] + tile] += window
    return (total / weights)[..., :height, :width]
