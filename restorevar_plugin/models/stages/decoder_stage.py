"""Stage 2: fine-tune the VQVAE decoder on continuous latents (paper section 3.3.2; no official code).

Encoder, ``quant_conv`` and quantizer stay frozen; ``decoder`` and ``post_quant_conv`` learn to map the
continuous latent ``encode_latent(gt)`` back to ``gt`` with L1 + SSIM + perceptual + PatchGAN losses
(:mod:`.reconstruction_objective`), alternating generator and discriminator steps.
"""
import torch
from torch import nn

from .base_stage import TrainingStage
from .reconstruction_objective import ReconstructionObjective

TRAINED_VQVAE_PREFIXES = ('decoder.', 'post_quant_conv.')


class LatentDecoder(nn.Module):
    """``post_quant_conv`` + ``decoder`` of a VQVAE (shared, not copied) as one module, so that DDP sees the
    trained path's forward: latent ``(B, C, h, w)`` -> image ``(B, 3, H, W)``, not clamped."""

    def __init__(self, vqvae):
        super().__init__()
        self.post_quant_conv = vqvae.post_quant_conv
        self.decoder = vqvae.decoder

    def forward(self, latent):
        """Decode without clamping, so that gradients reach every pixel."""
        return self.decoder(self.post_quant_conv(latent))


class DecoderStage(TrainingStage):
    """Continuous-latent decoder fine-tuning; saves the whole VQVAE (the next stage loads it as one file)."""

    name = 'decoder'

    def __init__(self, model):
        super().__init__(model)
        self.objective = ReconstructionObjective(self)
        self.latent_decoder = None
        self.trained_networks = ('net_vqvae', ) if self.objective.cri_gan is None else ('net_vqvae', 'net_d')

    def ddp_networks(self):
        """Only ``net_d``: the decoder path runs through its own DDP-wrapped :class:`LatentDecoder`."""
        return tuple(attr for attr in self.trained_networks if attr == 'net_d')

    def trainable_parameters(self):
        """``(name, parameter)`` of the decoder and ``post_quant_conv`` only."""
        return [(name, param) for name, param in self.model.net_vqvae.named_parameters()
                if name.startswith(TRAINED_VQVAE_PREFIXES)]

    def prepare_networks(self):
        """Train the decoder, ``post_quant_conv`` and ``net_d``; encoder, quant_conv and quantizer stay frozen."""
        model = self.model
        if 'net_d' in self.trained_networks:
            model.net_d.train()
            model.net_d.requires_grad_(True)
        decoder = LatentDecoder(model.net_vqvae)
        decoder.train()
        decoder.requires_grad_(True)
        self.latent_decoder = model.model_to_device(decoder)

    def setup_optimizers(self):
        """``optim_g`` over decoder + post_quant_conv, then ``optim_d`` when the GAN term is on."""
        return super().setup_optimizers() + self.objective.discriminator_optimizers()

    def optimize(self, current_iter):
        """Generator step (when scheduled) then discriminator step; returns the losses."""
        model = self.model
        with torch.no_grad():
            latent = model.net_vqvae.encode_latent(model.gt)
        updates_generator = self.objective.updates_generator(current_iter)
        with torch.set_grad_enabled(updates_generator), model.autocast():
            reconstruction = self.latent_decoder(latent)
        log = {}
        if updates_generator:
            model.optimizer_g.zero_grad(set_to_none=True)
            loss, log = self.objective.generator_loss(reconstruction, model.gt)
            model.backward_and_step(loss, model.optimizer_g, log,
                                     update_scaler=self.objective.cri_gan is None)
        log.update(self.objective.discriminator_step(reconstruction, model.gt))
        return log
