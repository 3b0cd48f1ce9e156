"""``RestorationModel``: image-to-image restoration (PromptIR-style baselines, any BasicSR arch).

BasicSR's ``SRModel`` (losses ``pixel_opt`` / ``perceptual_opt``, EMA, validation with BasicSR metrics)
on top of :class:`PluginBaseModel` (AdamW with parameter groups, our schedulers, AMP on GPU, gradient
clipping, atomic checkpoints). At test time inputs are reflect-padded to a multiple of
``val.size_multiple`` (for archs with down-sampling or windows) and the output is cropped back.
Validation and testing run :func:`restorevar_plugin.evaluation.validate` (batched, sharded across
ranks, per-image tables under a named protocol), as for every model of the package.
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from restorevar_plugin.evaluation import validate
from restorevar_plugin.models.inference_options import (
    compile_requested,
    inference_autocast,
    inference_dtype,
)
from restorevar_plugin.models.plugin_base_model import PluginBaseModel


@MODEL_REGISTRY.register()
class RestorationModel(PluginBaseModel, SRModel):
    """Supervised restoration model: ``net_g(lq) -> result``, images ``(B, 3, H, W)`` in [0, 1]."""

    supports_batched_validation = True
    option_schema = {'val': {'size_multiple': 'int'}}

    def setup_optimizers(self):
        """``train.optim_g`` over the trainable parameters of ``net_g``."""
        self.optimizer_g = self.build_optimizer(self.get_bare_model(self.net_g).named_parameters(),
                                                self.opt['train']['optim_g'])
        self.optimizers.append(self.optimizer_g)

    def net_inputs(self, net, lq):
        """The positional inputs of ``net`` for the (padded) images ``lq``; models whose network takes more
        than the degraded image (AWRaCLe's context pair) override this."""
        return (lq, )

    def optimize_parameters(self, current_iter):
        """One step: forward under autocast, pixel (+ perceptual) loss, clipped (scaled) step, EMA."""
        self.optimizer_g.zero_grad(set_to_none=True)
        with self.autocast():
            self.output = self.net_g(*self.net_inputs(self.net_g, self.lq))
        output = self.output.float()
        loss_dict = OrderedDict()
        l_total = 0
        if self.cri_pix:
            loss_dict['l_pix'] = self.cri_pix(output, self.gt)
            l_total = l_total + loss_dict['l_pix']
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(output, self.gt)
            for name, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    loss_dict[name] = value
                    l_total = l_total + value
        self.backward_and_step(l_total, self.optimizer_g, loss_dict)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        """Restore ``self.lq`` into ``self.output`` with the EMA network ``net_ema`` when present, else ``net_g``.

        Runs under ``val.precision`` (fp32 / bf16 / fp16 autocast, see :mod:`.inference_options`); the output
        is float32. ``val.compile`` compiles the network in place on the first test of a test run.
        """
        net = getattr(self, 'net_ema', None) or self.get_bare_model(self.net_g)
        val_opt = self.opt.get('val') or {}
        dtype = inference_dtype(val_opt, self.device)
        if not self.is_train and compile_requested(val_opt) and not getattr(self, '_compiled', False):
            self.get_bare_model(net).compile()
            self._compiled = True
        multiple = val_opt.get('size_multiple', 1)
        height, width = self.lq.shape[-2:]
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        lq = F.pad(self.lq, (0, pad_w, 0, pad_h), mode='reflect') if pad_h or pad_w else self.lq
        was_training = net.training
        net.eval()
        with torch.no_grad(), self.inference_memory(), inference_autocast(dtype, self.device):
            self.output = net(*self.net_inputs(net, lq))[..., :height, :width].float()
        net.train(was_training)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Every rank restores its share of the dataset (see :func:`restorevar_plugin.evaluation.validate`)."""
        validate(self, dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Evaluate ``dataloader`` through :func:`restorevar_plugin.evaluation.validate`."""
        validate(self, dataloader, current_iter, tb_logger, save_img)
