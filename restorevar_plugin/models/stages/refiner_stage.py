"""Stage 3: train the Latent Refiner Transformer (transformer and VQVAE frozen), as the official code does.

Per step the frozen transformer generates greedily from the degraded image (no gradients; only the
generation and the refiner run under AMP, the VQVAE encodings stay fp32 as in the official trainer), then the
refiner maps ``(f_hat tokens, last-block hidden states)`` to continuous tokens, trained with L1
(``train.pixel_opt``, BasicSR's ``L1Loss``) against ``encode_latent(gt)`` of the stage-2 VQVAE.

``train.image_opt`` (optional, not in the official recipe): a second loss (e.g. ``{type: L1Loss, loss_weight:
1.0}``) between the refined latent decoded by the frozen decoder used at test time
(:meth:`~restorevar_plugin.models.restorevar_model.RestoreVARModel.latent_decoder`) and the GT image, so that
the refiner is also trained on what the metrics see (on the CPU demo it did not help: README).

``train.generate_in_train_mode`` (default false): the official trainer (``trainer_refiner.py``) leaves the
frozen transformer in ``train()`` mode, so its DropPath (stochastic depth, up to ``drop_path_rate``) is active
during this generation and the refiner learns from slightly perturbed generations; ``true`` reproduces that
(``options/restorevar_stage3.yml``), ``false`` generates in eval mode as at test time. The transformer's
weights stay frozen either way.
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
            raise ValueError('train.pixel_opt (e.g. {type: L1Loss, loss_weight: 1.0}) is required for the refiner '
                             'stage')
        if getattr(model, 'net_refiner', None) is None:
            raise ValueError('the refiner stage needs a network_refiner block (LatentRefinerTransformer)')
        self.cri_image = self.build_weighted_loss('image_opt')
        self.generate_in_train_mode = self.train_opt.get('generate_in_train_mode', False)
        if not isinstance(self.generate_in_train_mode, bool):
            raise ValueError('train.generate_in_train_mode must be true or false; '
                             f'got {self.generate_in_train_mode!r}')

    def generate(self, cond):
        """Greedy generation of the frozen transformer from VQVAE features ``cond``, without gradients, under AMP.

        In train mode (DropPath active) with ``train.generate_in_train_mode``, else in eval mode.

        Returns:
            The transformer's ``generate`` output: ``f_hat`` ``(B, C, h, w)`` and ``last_hidden`` ``(B, L, D)``.
        """
        model = self.model
        model.net_g.train(self.generate_in_train_mode)
        with torch.no_grad(), model.autocast():
            return model.net_g.generate(cond, model.net_vqvae)

    def optimize(self, current_iter):
        """Generate (frozen), refine, L1 to the continuous GT latent (plus ``train.image_opt`` on the decoded
        image); returns ``l_pix`` (and ``l_image``)."""
        model = self.model
        with torch.no_grad():
            cond = model.net_vqvae.encode_features(model.lq)
            target = rearrange(model.net_vqvae.encode_latent(model.gt), 'b c h w -> b (h w) c')
        generated = self.generate(cond)
        f_hat_tokens = rearrange(generated.f_hat, 'b c h w -> b (h w) c').float()
        model.optimizer_g.zero_grad(set_to_none=True)
        with model.autocast():
            refined = model.net_refiner(f_hat_tokens, generated.last_hidden)
        loss = self.cri_pix(refined.float(), target)
        log = OrderedDict(l_pix=loss)
        if self.cri_image is not None:
            latent = rearrange(refined.float(), 'b (h w) c -> b c h w', h=generated.f_hat.shape[-2])
            with model.autocast():
                image = model.latent_decoder().decode_latent(latent)
            log['l_image'] = self.cri_image(image.float(), model.gt)
            loss = loss + log['l_image']
        model.backward_and_step(loss, model.optimizer_g, log)
        return log
