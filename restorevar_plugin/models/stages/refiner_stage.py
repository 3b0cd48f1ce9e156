"""Stage 3: train the Latent Refiner Transformer (transformer and VQVAE frozen), as the official code does.

Per step the frozen transformer generates greedily from the degraded image (no gradients; only the
generation and the refiner run under AMP, the VQVAE encodings stay fp32 as in the official trainer), then the
refiner maps ``(f_hat tokens, last-block hidden states)`` to continuous tokens, trained with L1
(``train.pixel_opt``, BasicSR's ``L1Loss``) against ``encode_latent(gt)`` of the stage-2 VQVAE.
The official trainer leaves the transformer in train mode, so its DropPath is active during this
generation; ``train.generate_in_train_mode: true`` reproduces that, the default generates in eval mode.
"""
from collections import OrderedDict

import torch
from einops import rearrange

from .base_stage import TrainingStage


class RefinerStage(TrainingStage):
    """Only ``net_refiner`` is optimised and saved."""

    name = 'refiner'
    trained_networks = ('net_refiner', )

    def __init__(self, model):
        super().__init__(model)
        self.cri_pix = self.build_weighted_loss('pixel_opt')
        if self.cri_pix is None:
            raise ValueError('train.pixel_opt (e.g. {type: L1Loss, loss_weight: 1.0}) is required for the refiner stage')
        if getattr(model, 'net_refiner', None) is None:
            raise ValueError('the refiner stage needs a network_refiner block (LatentRefinerTransformer)')
        self.generate_in_train_mode = bool(self.train_opt.get('generate_in_train_mode', False))

    def optimize(self, current_iter):
        """Generate (frozen), refine, L1 to the continuous GT latent; returns ``l_pix``."""
        model = self.model
        model.net_g.train(self.generate_in_train_mode)
        with torch.no_grad():
            cond = model.net_vqvae.encode_features(model.lq)
            target = rearrange(model.net_vqvae.encode_latent(model.gt), 'b c h w -> b (h w) c')
            with model.autocast():
                generated = model.net_g.generate(cond, model.net_vqvae)
        f_hat_tokens = rearrange(generated.f_hat, 'b c h w -> b (h w) c').float()
        model.optimizer_g.zero_grad(set_to_none=True)
        with model.autocast():
            refined = model.net_refiner(f_hat_tokens, generated.last_hidden)
        loss = self.cri_pix(refined.float(), target)
        log = OrderedDict(l_pix=loss)
        model.backward_and_step(loss, model.optimizer_g, log)
        return log
