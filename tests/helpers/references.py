"""Independent reference computations shared by several test modules (written from the definitions, loops
over tokens rather than the package's vectorised code)."""
import math

import torch


def reference_rope_table(patch_nums, head_dim, base=10000.0):
    """2D RoPE table written out directly: token (i, j) of scale pn sits at (i*G/pn, j*G/pn) on the last
    scale's G x G grid, rows then columns, each with freq_j = base^(-4j/head_dim)."""
    grid = patch_nums[-1]
    freqs = torch.tensor([base**(-4.0 * j / head_dim) for j in range(head_dim // 4)], dtype=torch.float64)
    rows, cols = [], []
    for pn in patch_nums:
        for i in range(pn):
            for j in range(pn):
                rows.append(i * grid / pn)
                cols.append(j * grid / pn)
    angles = torch.cat([torch.tensor(rows, dtype=torch.float64)[:, None] * freqs,
                        torch.tensor(cols, dtype=torch.float64)[:, None] * freqs], dim=1)
    return torch.complex(torch.cos(angles), torch.sin(angles)).to(torch.complex64)


def reference_levels(patch_nums):
    """Scale index of every token, ``(L,)``."""
    return torch.tensor([level for level, pn in enumerate(patch_nums) for _ in range(pn * pn)])


def reference_additive_mask(patch_nums):
    """Block-causal additive mask ``(1, 1, L, L)``: 0 where the key's scale <= the query's, -inf elsewhere."""
    levels = reference_levels(patch_nums).tolist()
    size = len(levels)
    mask = torch.full((size, size), -math.inf)
    for query in range(size):
        for key in range(size):
            if levels[key] <= levels[query]:
                mask[query, key] = 0.0
    return mask[None, None]


def fake_base_var_state(transformer, levels, generator):
    """A tiny base-VAR state dict: shared weights, AdaLN, absolute positions and buffers, no RestoreVAR modules."""
    width, length = transformer.embed_dim, transformer.seq_len
    state = {
        key: torch.randn(value.shape, generator=generator)
        for key, value in transformer.state_dict().items()
        if 'cross_attn.' not in key and not key.startswith(('global_embed', 'cond_proj4', 'word_embed_cond',
                                                            'lvl_embed_cond'))
    }
    state['lvl_embed.weight'] = torch.randn(levels, width, generator=generator)
    state['pos_start'] = torch.randn(1, 1, width, generator=generator)
    state['pos_1LC'] = torch.randn(1, length, width, generator=generator)
    state['attn_bias_for_masking'] = reference_additive_mask(transformer.patch_nums)
    state['lvl_1L'] = reference_levels(transformer.patch_nums)[None]
    state['head_nm.ada_lin.1.weight'] = torch.randn(2 * width, width, generator=generator)
    state['head_nm.ada_lin.1.bias'] = torch.randn(2 * width, generator=generator)
    for index in range(transformer.depth):
        state[f'blocks.{index}.ada_lin.1.weight'] = torch.randn(6 * width, width, generator=generator)
        state[f'blocks.{index}.ada_lin.1.bias'] = torch.randn(6 * width, generator=generator)
        state[f'blocks.{index}.attn.zero_k_bias'] = torch.zeros(width)
    return state
