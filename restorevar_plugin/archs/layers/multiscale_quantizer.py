"""VAR's residual multi-scale vector quantizer (``quantize.*`` in the official checkpoints).

A continuous latent ``f`` of shape ``(B, C, P, P)`` (``P = patch_nums[-1]``) is quantized coarse to fine.
With ``f_rest = f`` and ``f_hat = 0``, for every scale ``k`` with side ``pn``:

1. ``z = area_downsample(f_rest, pn)`` (the last scale is not resized);
2. ``idx = argmin_v ||z - e_v||^2`` over the codebook ``e`` (``quantize.embedding``);
3. ``h = e[idx]`` as ``(B, C, pn, pn)``; its contribution is ``phi_k(bicubic_upsample(h, P))`` (the last
   scale is not resized), where ``phi_k(x) = (1 - r) x + r conv3x3_k(x)`` with ``r = quant_resi``;
4. ``f_hat += contribution`` and ``f_rest -= contribution``.

The ``share_quant_resi`` phi convs are shared between scales: scale ``k`` of ``S`` uses the conv whose tick
is nearest to ``k / (S - 1)`` (see :func:`phi_indices_for`). Every path (quantization, ``f_hat`` from
indices, the transformer's teacher-forcing input and the generation step) computes a scale's contribution
with :meth:`MultiScaleQuantizer.scale_contribution`, so they cannot drift apart. Quantizer arithmetic runs
in the codebook's dtype with autocast disabled, as VAR does.
"""
import functools

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

# Official phi tables where k / (S - 1) lies exactly half-way between two ticks; the official code resolves
# these ties by float64 rounding (scales 2 and 7 of 10 go to convs 1 and 3). Keyed by (num_phi, num_scales).
OFFICIAL_PHI_TABLES = {
    (4, 10): (0, 0, 1, 1, 1, 2, 2, 3, 3, 3),
}

# Rows of the (rows x vocab) distance matrix computed at once: bounds its memory to 64 MiB in float32.
DISTANCE_CHUNK_ELEMENTS = 2 ** 24


def phi_ticks(num_phi):
    """Positions in [0, 1] of the ``num_phi`` shared phi convs (VAR: thirds for 4 convs, halves otherwise).

    Returns:
        np.ndarray: ``(num_phi,)`` float64, ``linspace(1/(3K), 1 - 1/(3K), K)`` for ``K = 4`` and
        ``linspace(1/(2K), 1 - 1/(2K), K)`` for other ``K``.
    """
    margin = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi
    return np.linspace(margin, 1 - margin, num_phi)


def phi_indices_for(num_scales, num_phi):
    """Which phi conv each scale uses.

    The official table is returned for the known scale counts that contain exact ties
    (:data:`OFFICIAL_PHI_TABLES`); otherwise scale ``k`` takes the tick of :func:`phi_ticks` nearest to
    ``k / (num_scales - 1)``, evaluated in float64 exactly as the official code does.

    Args:
        num_scales (int): Number of scales S (at least 2).
        num_phi (int): Number of shared phi convs K.

    Returns:
        tuple[int, ...]: ``(S,)`` conv indices in ``[0, K)``.
    """
    if num_scales < 2:
        raise ValueError(f'the multi-scale quantizer needs at least 2 scales, got {num_scales}')
    if (num_phi, num_scales) in OFFICIAL_PHI_TABLES:
        return OFFICIAL_PHI_TABLES[(num_phi, num_scales)]
    ticks = phi_ticks(num_phi)
    return tuple(int(np.argmin(np.abs(ticks - k / (num_scales - 1)))) for k in range(num_scales))


def _without_autocast(method):
    """Run ``method`` with CPU and CUDA autocast disabled (quantizer arithmetic stays in full precision)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with torch.autocast('cpu', enabled=False), torch.autocast('cuda', enabled=False):
            return method(*args, **kwargs)

    return wrapper


def _distributed():
    return dist.is_available() and dist.is_initialized()


def _sample_rows(rows, count, generator):
    """``count`` rows of ``rows`` (N, C), without replacement when ``count <= N``."""
    if count <= rows.shape[0]:
        pick = torch.randperm(rows.shape[0], generator=generator)[:count]
    else:
        pick = torch.randint(rows.shape[0], (count, ), generator=generator)
    return rows[pick.to(rows.device)]


class PhiConv(nn.Conv2d):
    """The residual refinement phi: ``(1 - ratio) * h + ratio * conv3x3(h)``, channels unchanged.

    Initialised to the identity (Dirac kernel, zero bias), so an untrained quantizer adds plain upsampled
    codes.

    Args:
        channels (int): Latent channels C.
        ratio (float): Mixing ratio r (``quant_resi``, 0.5 in VAR).
    """

    def __init__(self, channels, ratio):
        super().__init__(channels, channels, kernel_size=3, padding=1)
        self.ratio = ratio
        nn.init.dirac_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, h):
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


class SharedPhi(nn.Module):
    """``num_phi`` phi convs (``qresi_ls.{k}``) shared between ``num_scales`` scales.

    Args:
        channels (int): Latent channels C.
        ratio (float): Mixing ratio of every phi.
        num_phi (int): Number of convs K.
        num_scales (int): Number of scales S.
    """

    def __init__(self, channels, ratio, num_phi, num_scales):
        super().__init__()
        self.qresi_ls = nn.ModuleList(PhiConv(channels, ratio) for _ in range(num_phi))
        self.phi_indices = phi_indices_for(num_scales, num_phi)

    def forward(self, h, scale_index):
        """Apply the phi of scale ``scale_index`` to ``h`` ``(B, C, H, W)``."""
        return self.qresi_ls[self.phi_indices[scale_index]](h)


class MultiScaleQuantizer(nn.Module):
    """Residual multi-scale VQ with a shared codebook and partially shared phi convs (VAR's ``quantize``).

    Parameters and buffers: ``embedding.weight`` ``(V, C)``, ``quant_resi.qresi_ls.{k}.{weight,bias}`` and
    the code-usage buffer ``ema_vocab_hit_SV`` ``(S, V)`` (exponential moving average of per-scale code hits,
    updated in training mode; a stored one with another number of scales is ignored on loading).

    Indices are lists over scales of LongTensors ``(B, pn * pn)`` (row-major); ``f_hat`` and latents are
    ``(B, C, P, P)`` with ``P = patch_nums[-1]``.

    Args:
        vocab_size (int): Codebook size V.
        channels (int): Latent channels C.
        patch_nums (Sequence[int]): Increasing side of each scale's token map.
        beta (float): Weight of the commitment term of the VQ loss.
        quant_resi (float): Mixing ratio r of the phi convs.
        share_quant_resi (int): Number of shared phi convs K (at least 2).
    """

    def __init__(self, vocab_size, channels, patch_nums, beta=0.25, quant_resi=0.5, share_quant_resi=4):
        super().__init__()
        patch_nums = tuple(int(pn) for pn in patch_nums)
        if any(pn < 1 for pn in patch_nums) or any(a >= b for a, b in zip(patch_nums, patch_nums[1:])):
            raise ValueError(f'patch_nums must be strictly increasing positive sides, got {patch_nums}')
        if share_quant_resi < 2:
            raise ValueError(f'share_quant_resi must be >= 2 (partially shared phi convs, the official '
                             f'quantize.quant_resi.qresi_ls.* layout), got {share_quant_resi}')
        self.vocab_size = vocab_size
        self.channels = channels
        self.patch_nums = patch_nums
        self.beta = beta
        self.embedding = nn.Embedding(vocab_size, channels)
        nn.init.uniform_(self.embedding.weight, -1 / vocab_size, 1 / vocab_size)
        self.quant_resi = SharedPhi(channels, quant_resi, share_quant_resi, len(patch_nums))
        self.register_buffer('ema_vocab_hit_SV', torch.zeros(len(patch_nums), vocab_size))
        self.ema_updates = 0

    @property
    def phi_indices(self):
        """tuple[int, ...]: The phi conv used by each scale."""
        return self.quant_resi.phi_indices

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Keep our ``ema_vocab_hit_SV`` when the stored one has another number of scales (as VAR does)."""
        key = prefix + 'ema_vocab_hit_SV'
        stored = state_dict.get(key)
        if stored is not None and stored.shape[0] != self.ema_vocab_hit_SV.shape[0]:
            state_dict[key] = self.ema_vocab_hit_SV
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------------------------------------- checks
    def check_latent(self, f, name='f'):
        """Raise unless ``f`` is ``(B, C, P, P)`` with this quantizer's C and last patch side P."""
        side = self.patch_nums[-1]
        if f.dim() != 4 or f.shape[1] != self.channels or tuple(f.shape[2:]) != (side, side):
            raise ValueError(f'{name} must have shape (B, {self.channels}, {side}, {side}) (z_channels and '
                             f'patch_nums[-1] of this quantizer), got {tuple(f.shape)}')

    def check_indices(self, indices, num_scales, name='indices'):
        """Raise unless ``indices`` holds ``num_scales`` integer tensors ``(B, pn * pn)`` of the first scales."""
        if not isinstance(indices, (list, tuple)) or len(indices) not in num_scales:
            count = len(indices) if isinstance(indices, (list, tuple)) else type(indices).__name__
            raise ValueError(f'{name} must be a list of {" or ".join(map(str, num_scales))} per-scale index '
                             f'tensors (patch_nums {self.patch_nums}), got {count}')
        batch = None
        for scale_index, idx in enumerate(indices):
            self.check_scale_indices(idx, scale_index, batch, f'{name}[{scale_index}]')
            batch = idx.shape[0]

    def check_scale_indices(self, idx, scale_index, batch=None, name='idx'):
        """Raise unless ``idx`` is an integer tensor ``(B, pn * pn)`` for scale ``scale_index``."""
        if not 0 <= scale_index < len(self.patch_nums):
            raise ValueError(f'scale_index must be in [0, {len(self.patch_nums)}), got {scale_index}')
        tokens = self.patch_nums[scale_index]**2
        if not torch.is_tensor(idx):
            raise ValueError(f'{name} must be a tensor of shape (B, {tokens}), got {type(idx).__name__}')
        if (idx.dim() != 2 or idx.shape[1] != tokens or (batch is not None and idx.shape[0] != batch)
                or idx.dtype.is_floating_point or idx.dtype == torch.bool):
            want = f'({batch if batch is not None else "B"}, {tokens})'
            raise ValueError(f'{name} must be an integer tensor of shape {want} for scale {scale_index} '
                             f'(side {self.patch_nums[scale_index]}), got {idx.dtype} {tuple(idx.shape)}')

    # ------------------------------------------------------------------------------------------- primitives
    def nearest_codes(self, z):
        """Index of the nearest codebook entry (L2) of every row of ``z`` ``(N, C)``; returns ``(N,)`` long.

        Uses ``|z|^2 + |e|^2 - 2 z e^T`` in one ``addmm`` per chunk of rows, like VAR (same rounding).
        """
        codebook = self.embedding.weight.detach()
        code_sq = codebook.square().sum(1)
        z = z.detach()
        chunk = max(1, DISTANCE_CHUNK_ELEMENTS // self.vocab_size)
        return torch.cat([
            torch.addmm(rows.square().sum(1, keepdim=True) + code_sq, rows, codebook.T, alpha=-2).argmin(1)
            for rows in z.split(chunk)
        ])

    def embed_indices(self, idx, scale_index):
        """Codebook vectors of one scale's indices: ``(B, pn * pn)`` long -> ``(B, C, pn, pn)``."""
        self.check_scale_indices(idx, scale_index)
        return rearrange(self.embedding(idx), 'b (h w) c -> b c h w', h=self.patch_nums[scale_index])

    def scale_contribution(self, scale_index, h, size):
        """What scale ``scale_index`` adds to ``f_hat``: ``phi(bicubic_upsample(h, size))``.

        The last scale is neither resized nor checked against ``size`` (its side is ``size`` already).

        Args:
            scale_index (int): Scale k.
            h (Tensor): ``(B, C, pn, pn)`` codebook vectors of scale k.
            size (tuple[int, int]): Spatial size of ``f_hat``.

        Returns:
            Tensor: ``(B, C, *size)``.
        """
        if scale_index != len(self.patch_nums) - 1:
            h = F.interpolate(h, size=size, mode='bicubic')
        return self.quant_resi(h, scale_index)

    def _residual_scales(self, f, before_assign=None, final_contribution=True):
        """Greedy coarse-to-fine quantization of ``f`` ``(B, C, P, P)``.

        Yields, per scale, ``(idx (B, pn * pn), contribution (B, C, P, P))``; the contribution carries
        gradients to the codebook and phi convs, the code choice does not. With ``final_contribution=False``
        the last scale yields ``None`` as its contribution (callers that only need indices skip its phi conv).
        ``before_assign(scale_index, z)``, if given, sees the residual rows ``z`` ``(B * pn * pn, C)`` before
        they are assigned to codes.
        """
        last = len(self.patch_nums) - 1
        f_rest = f.detach()
        for scale_index, side in enumerate(self.patch_nums):
            z = f_rest if scale_index == last else F.interpolate(f_rest, size=(side, side), mode='area')
            z = rearrange(z, 'b c h w -> (b h w) c')
            if before_assign is not None:
                before_assign(scale_index, z)
            idx = self.nearest_codes(z).view(f.shape[0], side * side)
            if scale_index == last and not final_contribution:
                yield idx, None
                return
            contribution = self.scale_contribution(scale_index, self.embed_indices(idx, scale_index), f.shape[2:])
            if scale_index != last:
                f_rest = f_rest - contribution.detach()
            yield idx, contribution

    # ------------------------------------------------------------------------------------------- public API
    @_without_autocast
    def latent_to_indices(self, f):
        """Token indices of a continuous latent ``f`` ``(B, C, P, P)``: list over scales of ``(B, pn * pn)``."""
        self.check_latent(f)
        return [idx for idx, _ in self._residual_scales(f.to(self.embedding.weight.dtype), final_contribution=False)]

    @_without_autocast
    def quantize(self, f):
        """Quantize ``f`` with the VQ losses; the tokenizer-training path (also valid in eval mode).

        The VQ loss is VAR's: the mean over scales k of ``mse(f_hat_k, sg(f)) + beta * mse(sg(f_hat_k), f)``
        (codebook term + beta * commitment term), with ``f_hat_k`` the accumulation after scale k. In training
        mode the per-scale code hits update ``ema_vocab_hit_SV`` (summed over processes when
        ``torch.distributed`` is initialised): copied on the first update, then EMA with decay 0.9 for 100
        updates and 0.99 afterwards.

        Args:
            f (Tensor): ``(B, C, P, P)`` continuous latent.

        Returns:
            tuple: ``f_hat`` ``(B, C, P, P)`` (straight-through ``f + sg(f_hat - f)`` when ``f`` requires grad,
            the plain ``f_hat`` otherwise); indices (list over scales of ``(B, pn * pn)``); and a dict with
            ``vq_loss``, ``codebook_loss``, ``commitment_loss`` (scalars) and ``code_counts`` ``(S, V)``
            (this batch's hits per scale and code, float).
        """
        self.check_latent(f)
        f = f.to(self.embedding.weight.dtype)
        target = f.detach()
        f_hat = torch.zeros_like(target)
        indices, counts = [], []
        codebook_loss = commitment_loss = 0
        for idx, contribution in self._residual_scales(f):
            f_hat = f_hat + contribution
            codebook_loss = codebook_loss + F.mse_loss(f_hat, target)
            commitment_loss = commitment_loss + F.mse_loss(f_hat.detach(), f)
            indices.append(idx)
            counts.append(torch.bincount(idx.flatten(), minlength=self.vocab_size))
        code_counts = torch.stack(counts).float()
        if self.training:
            self._update_code_usage(code_counts)
        codebook_loss = codebook_loss / len(self.patch_nums)
        commitment_loss = commitment_loss / len(self.patch_nums)
        if f.requires_grad:
            f_hat = f + (f_hat - f).detach()
        losses = {
            'vq_loss': codebook_loss + self.beta * commitment_loss,
            'codebook_loss': codebook_loss,
            'commitment_loss': commitment_loss,
            'code_counts': code_counts,
        }
        return f_hat, indices, losses

    @torch.no_grad()
    def _update_code_usage(self, code_counts):
        if _distributed():
            dist.all_reduce(code_counts)
        if self.ema_updates == 0:
            self.ema_vocab_hit_SV.copy_(code_counts)
        else:
            decay = 0.9 if self.ema_updates < 100 else 0.99
            self.ema_vocab_hit_SV.mul_(decay).add_(code_counts, alpha=1 - decay)
        self.ema_updates += 1

    @_without_autocast
    def indices_to_fhat(self, indices):
        """Accumulated discrete latent of the given first scales (a prefix of ``patch_nums`` is allowed).

        Args:
            indices (list[Tensor]): ``1..S`` tensors ``(B, pn * pn)`` for the first scales.

        Returns:
            Tensor: ``(B, C, P, P)`` in the codebook's dtype.
        """
        self.check_indices(indices, range(1, len(self.patch_nums) + 1))
        side = self.patch_nums[-1]
        f_hat = self.embedding.weight.new_zeros(indices[0].shape[0], self.channels, side, side)
        for scale_index, idx in enumerate(indices):
            f_hat = f_hat + self.scale_contribution(scale_index, self.embed_indices(idx, scale_index), (side, side))
        return f_hat

    @_without_autocast
    def next_scale_input(self, scale_index, f_hat, h):
        """One generation step: add scale ``scale_index``'s codes to ``f_hat`` and make the next scale's input.

        Args:
            scale_index (int): Scale k whose codes ``h`` were just chosen.
            f_hat (Tensor): ``(B, C, P, P)`` accumulation of scales ``< k`` (not modified).
            h (Tensor): ``(B, C, pn_k, pn_k)`` codebook vectors of scale k (:meth:`embed_indices`).

        Returns:
            tuple[Tensor, Tensor | None]: The new ``f_hat`` ``(B, C, P, P)`` and the area-downsampled
            ``(B, C, pn_{k+1}, pn_{k+1})`` input of scale k + 1 (``None`` after the last scale).
        """
        self.check_latent(f_hat, 'f_hat')
        if not 0 <= scale_index < len(self.patch_nums):
            raise ValueError(f'scale_index must be in [0, {len(self.patch_nums)}), got {scale_index}')
        side = self.patch_nums[scale_index]
        if h.dim() != 4 or tuple(h.shape[1:]) != (self.channels, side, side) or h.shape[0] != f_hat.shape[0]:
            raise ValueError(f'h must have shape ({f_hat.shape[0]}, {self.channels}, {side}, {side}) for scale '
                             f'{scale_index}, got {tuple(h.shape)}')
        f_hat = f_hat + self.scale_contribution(scale_index, h, f_hat.shape[2:])
        if scale_index == len(self.patch_nums) - 1:
            return f_hat, None
        next_side = self.patch_nums[scale_index + 1]
        return f_hat, F.interpolate(f_hat, size=(next_side, next_side), mode='area')

    @_without_autocast
    def teacher_input(self, indices):
        """The transformer's teacher-forcing input from ground-truth indices.

        Args:
            indices (list[Tensor]): ``S`` (or ``S - 1``: the last scale is not needed) tensors ``(B, pn * pn)``.

        Returns:
            Tensor: ``(B, L - pn_0 ** 2, C)``, the flattened (row-major) inputs of scales ``1 .. S-1``.
        """
        num_scales = len(self.patch_nums)
        self.check_indices(indices, (num_scales - 1, num_scales))
        side = self.patch_nums[-1]
        f_hat = self.embedding.weight.new_zeros(indices[0].shape[0], self.channels, side, side)
        inputs = []
        for scale_index in range(num_scales - 1):
            f_hat, next_input = self.next_scale_input(scale_index, f_hat,
                                                      self.embed_indices(indices[scale_index], scale_index))
            inputs.append(rearrange(next_input, 'b c h w -> b (h w) c'))
        return torch.cat(inputs, dim=1)

    # ------------------------------------------------------------------------------------ codebook upkeep
    @torch.no_grad()
    @_without_autocast
    def reseed_codes(self, f, code_ids, generator=None):
        """Set the codes ``code_ids`` to residual vectors of ``f``, scale by scale.

        The codes are split between scales in proportion to their token counts (``pn ** 2``). Walking the
        scales coarse to fine, scale k's share is set to randomly drawn rows of the residual that ``f`` leaves
        at scale k (given the codes chosen, with the updated codebook, at the coarser scales); then that scale
        is quantized and the walk continues. The EMA hits of the reseeded codes are set to the per-scale
        uniform share, so that they are not judged dead again straight away. Under ``torch.distributed`` the
        codebook and usage statistics of rank 0 are broadcast to every process.

        Args:
            f (Tensor): ``(B, C, P, P)`` recent continuous latents (``quant_conv`` outputs).
            code_ids (Tensor): ``(n,)`` long indices of the codes to reseed.
            generator (torch.Generator | None): CPU generator for the random draws.
        """
        self.check_latent(f)
        code_ids = code_ids.to(self.embedding.weight.device)
        tokens = torch.tensor([pn * pn for pn in self.patch_nums], dtype=torch.float64)
        bounds = (tokens.cumsum(0) / tokens.sum() * len(code_ids)).round().long().tolist()
        shares = code_ids.tensor_split(bounds[:-1])

        def reseed(scale_index, z):
            ids = shares[scale_index]
            if len(ids):
                self.embedding.weight[ids] = _sample_rows(z, len(ids), generator).to(self.embedding.weight.dtype)

        for _ in self._residual_scales(f.to(self.embedding.weight.dtype), reseed, final_contribution=False):
            pass
        self.ema_vocab_hit_SV[:, code_ids] = self.ema_vocab_hit_SV.sum(1, keepdim=True) / self.vocab_size
        if _distributed():
            dist.broadcast(self.embedding.weight.data, src=0)
            dist.broadcast(self.ema_vocab_hit_SV, src=0)

    def dead_codes(self, min_usage=0.08):
        """Boolean ``(V,)`` mask of the codes whose EMA hits summed over scales are below ``min_usage`` times
        the uniform share ``ema_vocab_hit_SV.sum() / V`` (none before the first training-mode quantization)."""
        hits = self.ema_vocab_hit_SV.sum(0)
        return hits < min_usage * hits.sum() / self.vocab_size

    def restart_dead_codes(self, f, min_usage=0.08, generator=None):
        """Reseed the codes that have gone unused (:meth:`reseed_codes`) and return how many there were.

        Dead codes are those of :meth:`dead_codes` (``ema_vocab_hit_SV`` remembers about the last 100 training
        steps).

        Args:
            f (Tensor): ``(B, C, P, P)`` recent continuous latents.
            min_usage (float): Threshold as a fraction of uniform usage.
            generator (torch.Generator | None): CPU generator for the random draws.

        Returns:
            int: Number of reseeded codes.
        """
        dead = self.dead_codes(min_usage).nonzero().flatten()
        if len(dead):
            self.reseed_codes(f, dead, generator)
        return len(dead)

    def init_codebook_from_latents(self, f, generator=None):
        """Data-dependent initialisation: reseed every code from ``f`` ``(B, C, P, P)`` (:meth:`reseed_codes`)."""
        self.reseed_codes(f, torch.arange(self.vocab_size), generator)
