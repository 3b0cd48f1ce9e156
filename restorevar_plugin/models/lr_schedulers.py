"""Per-iteration learning-rate schedules the reference recipes need, beyond BasicSR 1.4.2's two.

BasicSR's training loop calls ``scheduler.step()`` once per iteration (from iteration 2 on), so
``last_epoch`` here counts iterations: the learning rate used at iteration ``i`` (1-based) is
``base_lr * factor(i - 1)``. Both schedules are closed-form in ``last_epoch``, so a resumed
``state_dict`` reproduces the exact curve.
"""
import math

from torch.optim.lr_scheduler import LRScheduler


class LinearWarmupCosineLR(LRScheduler):
    """PromptIR / AWRaCLe's ``LinearWarmupCosineAnnealingLR``, counted in iterations.

    For ``t < warmup_iter``: ``lr = warmup_start_lr + t * (base - warmup_start_lr) / (warmup_iter - 1)``;
    afterwards half-cosine from ``base`` to ``eta_min`` at ``max_iter``. The reference code steps per
    epoch (warm-up 15, max 150 epochs): multiply those by the iterations per epoch.

    Args:
        optimizer (Optimizer): Wrapped optimizer.
        warmup_iter (int): Length of the linear warm-up (>= 0).
        max_iter (int): Iteration at which the cosine reaches ``eta_min`` (> ``warmup_iter``).
        warmup_start_lr (float): Absolute learning rate at step 0. Default: 0 (as the reference).
        eta_min (float): Absolute final learning rate. Default: 0.
    """

    def __init__(self, optimizer, warmup_iter, max_iter, warmup_start_lr=0.0, eta_min=0.0, last_epoch=-1):
        if not 0 <= warmup_iter < max_iter:
            raise ValueError(f'LinearWarmupCosineLR needs 0 <= warmup_iter < max_iter, got {warmup_iter}, {max_iter}')
        self.warmup_iter, self.max_iter = int(warmup_iter), int(max_iter)
        self.warmup_start_lr, self.eta_min = float(warmup_start_lr), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        """Absolute learning rates (the start and end values are absolute, not multipliers)."""
        step = self.last_epoch
        lrs = []
        for base_lr in self.base_lrs:
            if step < self.warmup_iter:
                span = max(self.warmup_iter - 1, 1)
                lrs.append(self.warmup_start_lr + step * (base_lr - self.warmup_start_lr) / span)
            else:
                progress = min((step - self.warmup_iter) / (self.max_iter - self.warmup_iter), 1.0)
                lrs.append(self.eta_min + 0.5 * (base_lr - self.eta_min) * (1 + math.cos(math.pi * progress)))
        return lrs


class ConstantLinearDecayLR(LRScheduler):
    """VAR / RestoreVAR's ``lin0`` schedule: warm-up, constant, then linear decay to ``end_ratio``.

    With ``p = (t - warmup_iter) / (total_iter - 1 - warmup_iter)``: the factor is
    ``warmup_start_ratio + (1 - warmup_start_ratio) * t / warmup_iter`` during warm-up, 1 while
    ``p < constant_ratio``, then ``end_ratio + (1 - end_ratio) * (1 - p) / (1 - constant_ratio)``, reaching
    ``end_ratio`` at the last iteration. RestoreVAR: ``warmup_start_ratio=1`` (``wp0``), warm-up one epoch,
    ``constant_ratio=0.05``, ``end_ratio=0.01`` (``wpe``).

    Args:
        optimizer (Optimizer): Wrapped optimizer.
        total_iter (int): Number of training iterations.
        warmup_iter (int): Warm-up iterations. Default: 0.
        warmup_start_ratio (float): Factor at step 0 of the warm-up. Default: 1 (no ramp).
        constant_ratio (float): Fraction of the post-warm-up span kept at the peak. Default: 0.05.
        end_ratio (float): Final factor. Default: 0.01.
    """

    def __init__(self, optimizer, total_iter, warmup_iter=0, warmup_start_ratio=1.0, constant_ratio=0.05,
                 end_ratio=0.01, last_epoch=-1):
        if not 0 <= warmup_iter < total_iter - 1:
            raise ValueError(f'ConstantLinearDecayLR needs 0 <= warmup_iter < total_iter - 1, '
                             f'got {warmup_iter}, {total_iter}')
        if not 0 <= constant_ratio < 1:
            raise ValueError(f'constant_ratio must be in [0, 1), got {constant_ratio}')
        self.total_iter, self.warmup_iter = int(total_iter), int(warmup_iter)
        self.warmup_start_ratio, self.constant_ratio = float(warmup_start_ratio), float(constant_ratio)
        self.end_ratio = float(end_ratio)
        super().__init__(optimizer, last_epoch)

    def factor(self, step):
        """Multiplier of the peak learning rate at step ``step``."""
        if step < self.warmup_iter:
            return self.warmup_start_ratio + (1 - self.warmup_start_ratio) * step / self.warmup_iter
        progress = min((step - self.warmup_iter) / (self.total_iter - 1 - self.warmup_iter), 1.0)
        if progress < self.constant_ratio:
            return 1.0
        return self.end_ratio + (1 - self.end_ratio) * (1 - progress) / (1 - self.constant_ratio)

    def get_lr(self):
        """Learning rates for the current ``last_epoch`` (one per parameter group)."""
        scale = self.factor(self.last_epoch)
        return [base_lr * scale for base_lr in self.base_lrs]


SCHEDULERS = {
    'LinearWarmupCosineLR': LinearWarmupCosineLR,
    'ConstantLinearDecayLR': ConstantLinearDecayLR,
}
