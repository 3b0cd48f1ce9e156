"""Tokenizer stage: train (or fine-tune) the multi-scale VQVAE itself; VAR never released this code.

Per step: ``net_vqvae(gt)`` (encode, multi-scale residual quantization with a straight-through estimator,
decode), the reconstruction objective of :mod:`.reconstruction_objective` (L1, optional SSIM, LPIPS and
PatchGAN terms) plus ``train.vq_weight`` x (codebook loss + beta x commitment loss). Options:

* ``init_codebook_from_data: true``: before the first step, every code is set to a residual vector of the
  first batch (a good start from scratch);
* ``dead_code_restart: {interval: 100, min_usage: 0.08}``: every ``interval`` iterations, codes whose EMA
  usage fell below ``min_usage`` x uniform usage are re-seeded from the current batch's residuals.
* ``continuous_weight: 1.0`` (default 0, off): also decode the encoder's continuous latent, bypassing the
  quantizer, and add this weight x the same reconstruction objective (HART's hybrid training, Tang et al.
  2024). The decoder stage and the refiner work on continuous latents; this term makes the encoder keep
  detail that the tokens cannot carry (the quantizer's ``beta`` bounds how far the latent may leave its codes).

Logged: the losses (``l_continuous`` for the continuous term), ``perplexity`` (of the batch's code usage
over all scales; ``vocab_size`` when uniform) and ``dead_codes`` (codes whose EMA usage summed over scales
is below the threshold, see ``MultiScaleQuantizer.dead_codes``).
"""
from collections import OrderedDict

import torch

from .base_stage import TrainingStage
from .reconstruction_objective import ReconstructionObjective


def perplexity(code_counts):
    """``exp(entropy)`` of the code distribution given hit counts ``(S, V)`` (summed over scales)."""
    probabilities = code_counts.sum(dim=0) / code_counts.sum().clamp_min(1)
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum()
    return entropy.exp()


class TokenizerStage(TrainingStage):
    """Trains every VQVAE parameter (and the discriminator when the GAN term is on)."""

    name = 'tokenizer'

    def __init__(self, model):
        super().__init__(model)
        self.objective = ReconstructionObjective(self)
        self.trained_networks = ('net_vqvae', ) if self.objective.cri_gan is None else ('net_vqvae', 'net_d')
        self.vq_weight = float(self.train_opt.get('vq_weight', 1.0))
        self.continuous_weight = float(self.train_opt.get('continuous_weight', 0.0))
        restart = self.train_opt.get('dead_code_restart') or {}
        self.restart_interval = int(restart.get('interval', 0))
        self.min_usage = float(restart.get('min_usage', 0.08))
        self.init_codebook = bool(self.train_opt.get('init_codebook_from_data', False))

    def has_unused_parameters(self, attr):
        """True for the VQVAE when some shared phi conv serves no scale (possible with few scales)."""
        quantizer = self.model.get_bare_model(self.model.net_vqvae).quantize
        return attr == 'net_vqvae' and len(set(quantizer.phi_indices)) < len(quantizer.quant_resi.qresi_ls)

    def state_dict(self):
        """The quantizer's count of code-usage updates (a plain attribute, so not in the network file)."""
        return {'code_usage_updates': self.model.get_bare_model(self.model.net_vqvae).quantize.ema_updates}

    def load_state_dict(self, state):
        """Restore the quantizer's code-usage update count (its EMA decay depends on it)."""
        if 'code_usage_updates' in state:
            self.model.get_bare_model(self.model.net_vqvae).quantize.ema_updates = int(state['code_usage_updates'])

    def setup_optimizers(self):
        """``optim_g`` over the whole VQVAE, then ``optim_d`` when the GAN term is on."""
        return super().setup_optimizers() + self.objective.discriminator_optimizers()

    def optimize(self, current_iter):
        """One VQVAE step (when scheduled), the discriminator step, and the periodic dead-code restart."""
        model = self.model
        vqvae = model.get_bare_model(model.net_vqvae)
        if self.init_codebook and current_iter == 1:
            with torch.no_grad():
                vqvae.quantize.init_codebook_from_latents(vqvae.encode_latent(model.gt))
        updates_generator = self.objective.updates_generator(current_iter)
        with torch.set_grad_enabled(updates_generator), model.autocast():
            reconstruction, vq = model.net_vqvae(model.gt, decode_continuous=self.continuous_weight > 0)
        log = OrderedDict()
        if updates_generator:
            model.optimizer_g.zero_grad(set_to_none=True)
            loss, log = self.objective.generator_loss(reconstruction, model.gt)
            if self.continuous_weight > 0:
                continuous_loss, _ = self.objective.generator_loss(vq['continuous_reconstruction'], model.gt)
                log['l_continuous'] = continuous_loss
                loss = loss + self.continuous_weight * continuous_loss
            log['l_vq'] = vq['vq_loss']
            model.backward_and_step(loss + self.vq_weight * vq['vq_loss'], model.optimizer_g, log,
                                     update_scaler=self.objective.cri_gan is None)
        log.update(self.objective.discriminator_step(reconstruction, model.gt))
        log['perplexity'] = perplexity(vq['code_counts'].float())
        if self.restart_interval and current_iter % self.restart_interval == 0:
            with torch.no_grad():
                restarted = vqvae.quantize.restart_dead_codes(vqvae.encode_latent(model.gt), self.min_usage)
            log['restarted_codes'] = torch.tensor(float(restarted), device=model.device)
        log['dead_codes'] = vqvae.quantize.dead_codes(self.min_usage).sum().float()
        return log
