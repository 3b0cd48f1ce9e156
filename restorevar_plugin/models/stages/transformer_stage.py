"""Stage 1: teacher-forced next-scale cross-entropy of the RestoreVAR transformer (VQVAE frozen)."""
from collections import OrderedDict

import torch
import torch.nn.functional as F

from .base_stage import TrainingStage


class TransformerStage(TrainingStage):
    """Train ``net_g`` to predict the clean image's tokens of every scale from the degraded image.

    Per step: ``cond = encode_features(lq)``, ``indices = img_to_indices(gt)`` and the teacher-forcing input
    (all without gradients, VQVAE frozen), then the mean cross-entropy over all L tokens
    (``train.label_smoothing``, default 0 as the official recipe). Logged: ``l_ce``, token accuracy
    overall (``acc``), of the first (``acc_first``) and of the last scale (``acc_last``), in percent.
    """

    name = 'transformer'
    trained_networks = ('net_g', )

    def optimize(self, current_iter):
        """One teacher-forced step; returns ``l_ce`` and the accuracies."""
        model = self.model
        with torch.no_grad():
            cond = model.net_vqvae.encode_features(model.lq)
            indices = model.net_vqvae.img_to_indices(model.gt)
            teacher_input = model.net_vqvae.quantize.teacher_input(indices)
        target = torch.cat(indices, dim=1)
        model.optimizer_g.zero_grad(set_to_none=True)
        with model.autocast():
            logits = model.net_g(cond, teacher_input)
        loss = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(),
                               label_smoothing=float(self.train_opt.get('label_smoothing', 0.0)))
        log = OrderedDict(l_ce=loss)
        model.backward_and_step(loss, model.optimizer_g, log)
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == target).float()
            first, last = indices[0].shape[1], indices[-1].shape[1]
            log['acc'] = correct.mean() * 100
            log['acc_first'] = correct[:, :first].mean() * 100
            log['acc_last'] = correct[:, -last:].mean() * 100
        return log
