"""2D rotary position embedding (RoPE) for multi-scale token maps (the RestoreVAR / VarSR convention).

A head of ``head_dim`` channels is read as ``head_dim / 2`` complex numbers made of interleaved channel
pairs ``(2m, 2m + 1)`` (the LLaMA convention, not the half-split one). The first ``head_dim / 4`` complex
numbers rotate by the token's **row** position, the last ``head_dim / 4`` by its **column** position, each
with the frequencies ``base ** (-4 j / head_dim)``, ``j = 0 .. head_dim / 4 - 1``.

Positions: a token at row ``i``, column ``j`` of a ``pn x pn`` scale sits at ``(i / pn * G, j / pn * G)``
with ``G = patch_nums[-1]``, so every scale is laid on the final ``G x G`` grid (not centred; the single
start token sits at ``(0, 0)``). The condition tokens of the cross-attention sit on the ``G x G`` grid
itself. Tables are complex64 of shape ``(tokens, head_dim / 2)``, computed in float32 in the same order of
operations as the official buffers ``freqs_cis`` / ``freqs_cis_cross`` so that they match them.
"""
import torch
from einops import rearrange


def rope_frequencies(head_dim, base=10000.0):
    """Per-axis rotation frequencies.

    Args:
        head_dim (int): Channels per attention head; a multiple of 4.
        base (float): RoPE base theta.

    Returns:
        Tensor: ``(head_dim // 4,)`` float32, ``base ** (-4 j / head_dim)``.
    """
    if head_dim % 4:
        raise ValueError(f'2D RoPE needs head_dim divisible by 4 (two axes of complex pairs), got {head_dim}')
    exponents = torch.arange(0, head_dim, 4, dtype=torch.float32) / head_dim
    return 1.0 / (base**exponents)


def multiscale_positions(patch_nums):
    """Row and column positions of every token of a multi-scale token pyramid on the last grid.

    Args:
        patch_nums (Sequence[int]): Side of each scale, coarse to fine.

    Returns:
        tuple[Tensor, Tensor]: Rows and columns, each ``(sum pn**2,)`` float32, scale after scale in
        row-major order.
    """
    grid = patch_nums[-1]
    rows, cols = [], []
    for pn in patch_nums:
        steps = torch.arange(pn, dtype=torch.float32) / pn * grid
        row, col = torch.meshgrid(steps, steps, indexing='ij')
        rows.append(row.flatten())
        cols.append(col.flatten())
    return torch.cat(rows), torch.cat(cols)


def rope_table(rows, cols, head_dim, base=10000.0):
    """Complex rotation table for tokens at the given 2D positions.

    Args:
        rows (Tensor): ``(N,)`` float32 row positions.
        cols (Tensor): ``(N,)`` float32 column positions.
        head_dim (int): Channels per attention head; a multiple of 4.
        base (float): RoPE base theta.

    Returns:
        Tensor: ``(N, head_dim // 2)`` complex64 unit rotations; row pairs first, then column pairs.
    """
    freqs = rope_frequencies(head_dim, base).to(rows.device)
    angles = torch.cat([torch.outer(rows, freqs), torch.outer(cols, freqs)], dim=1)
    return torch.polar(torch.ones_like(angles), angles)


def multiscale_rope_table(patch_nums, head_dim, base=10000.0):
    """RoPE table of a whole token pyramid (the official ``freqs_cis``), ``(sum pn**2, head_dim // 2)``."""
    rows, cols = multiscale_positions(patch_nums)
    return rope_table(rows, cols, head_dim, base)


def grid_rope_table(grid, head_dim, base=10000.0):
    """RoPE table of a ``grid x grid`` token map at unit spacing (the official ``freqs_cis_cross``).

    Returns:
        Tensor: ``(grid**2, head_dim // 2)`` complex64.
    """
    return multiscale_rope_table((grid, ), head_dim, base)


def apply_rope(x, table):
    """Rotate the channel pairs of ``x`` by ``table`` (computed in float32, cast back).

    Args:
        x (Tensor): ``(B, heads, N, head_dim)`` queries or keys.
        table (Tensor): ``(N, head_dim // 2)`` complex64 rotations of those N tokens.

    Returns:
        Tensor: Same shape and dtype as ``x``.
    """
    if table.shape != (x.shape[-2], x.shape[-1] // 2):
        raise ValueError(f'RoPE table of shape {tuple(table.shape)} does not fit tokens of shape {tuple(x.shape)}')
    pairs = torch.view_as_complex(rearrange(x.float(), '... (m two) -> ... m two', two=2).contiguous())
    rotated = torch.view_as_real(pairs * table)
    return rearrange(rotated, '... m two -> ... (m two)').type_as(x)
