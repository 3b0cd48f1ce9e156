"""Image-reconstruction objective shared by the decoder and tokenizer stages: L1 + SSIM + perceptual + GAN.

Options under ``train`` (each optional; a missing block or ``loss_weight: 0`` switches the term off):
``pixel_opt`` (e.g. BasicSR's ``L1Loss``), ``ssim_opt`` (``SSIMLoss``), ``perceptual_opt`` (``LPIPSLoss``),
``gan_opt`` (BasicSR's ``GANLoss``, needs ``network_d`` and ``optim_d``), plus BasicSR's GAN schedule keys
``net_d_iters`` (update the generator every n-th iteration, default 1) and ``net_d_init_iters``
(discriminator-only warm-up, default 0). Images are ``(B, 3, H, W)`` in [-1, 1].
"""
from collections import OrderedDict

import torch


class ReconstructionObjective:
    """Generator-side losses and the alternating discriminator step, as BasicSR's ``SRGANModel`` does.

    Args:
        stage (TrainingStage): Supplies the model and ``build_weighted_loss``.
    """

    TERMS = (('l_pix', 'pixel_opt'), ('l_ssim', 'ssim_opt'), ('l_percep', 'perceptual_opt'))

    def __init__(self, stage):
        self.model = stage.model
        train_opt = stage.train_opt
        self.losses = OrderedDict()
        for log_key, option_key in self.TERMS:
            loss = stage.build_weighted_loss(option_key)
            if loss is not None:
                self.losses[log_key] = loss
        self.cri_gan = stage.build_weighted_loss('gan_opt')
        if self.cri_gan is not None and getattr(self.model, 'net_d', None) is None:
            raise ValueError('train.gan_opt needs a discriminator: add a network_d block (e.g. PatchGANDiscriminator)')
        self.net_d_iters = int(train_opt.get('net_d_iters', 1))
        self.net_d_init_iters = int(train_opt.get('net_d_init_iters', 0))
        if not self.losses and self.cri_gan is None:
            raise ValueError('train: no reconstruction loss configured (pixel_opt, ssim_opt, perceptual_opt, gan_opt)')

    def discriminator_optimizers(self):
        """``[optimizer_d]`` built from ``train.optim_d`` when the adversarial term is on, else ``[]``."""
        if self.cri_gan is None:
            return []
        model = self.model
        model.optimizer_d = model.build_optimizer(
            model.get_bare_model(model.net_d).named_parameters(), model.opt['train']['optim_d'], label='optim_d')
        return [model.optimizer_d]

    def updates_generator(self, current_iter):
        """Whether this iteration updates the generator (BasicSR's ``net_d_iters`` / ``net_d_init_iters``)."""
        return current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters

    def generator_loss(self, reconstruction, target):
        """Weighted sum of the configured terms for ``reconstruction`` vs ``target``; returns (total, log dict)."""
        log = OrderedDict()
        total = 0
        reconstruction = reconstruction.float()
        for log_key, loss in self.losses.items():
            log[log_key] = loss(reconstruction, target)
            total = total + log[log_key]
        if self.cri_gan is not None:
            for param in self.model.net_d.parameters():
                param.requires_grad_(False)
            with self.model.autocast():
                fake_logits = self.model.net_d(reconstruction)
            log['l_g_gan'] = self.cri_gan(fake_logits.float(), True, is_disc=False)
            total = total + log['l_g_gan']
        return total, log

    def discriminator_step(self, reconstruction, target):
        """One ``optimizer_d`` step on real ``target`` and detached ``reconstruction``; returns its log dict."""
        if self.cri_gan is None:
            return OrderedDict()
        model = self.model
        for param in model.net_d.parameters():
            param.requires_grad_(True)
        model.optimizer_d.zero_grad(set_to_none=True)
        with model.autocast():
            real_logits = model.net_d(target)
            fake_logits = model.net_d(reconstruction.detach())
        l_d_real = self.cri_gan(real_logits.float(), True, is_disc=True)
        l_d_fake = self.cri_gan(fake_logits.float(), False, is_disc=True)
        model.backward_and_step(l_d_real + l_d_fake, model.optimizer_d)
        return OrderedDict(l_d_real=l_d_real, l_d_fake=l_d_fake,
                           out_d_real=torch.mean(real_logits.detach().float()),
                           out_d_fake=torch.mean(fake_logits.detach().float()))
