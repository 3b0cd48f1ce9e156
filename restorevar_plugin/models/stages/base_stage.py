"""What every RestoreVAR training stage provides to
:class:`~restorevar_plugin.models.restorevar_model.RestoreVARModel`."""
from abc import ABC, abstractmethod

from basicsr.losses import build_loss


class TrainingStage(ABC):
    """One training stage: which networks it trains, their optimizers, and one optimisation step.

    Subclasses set ``name`` and ``trained_networks`` (model attribute names such as ``'net_g'``); the
    model freezes every other network and saves only these. The networks named by :meth:`ddp_networks`
    (default: the trained ones) are wrapped in DistributedDataParallel, so the stage must run their
    ``forward`` (not another method) for gradients to be synchronised across processes.

    Args:
        model (RestoreVARModel): The owning model (networks, device, AMP helpers, options).
    """

    name = ''
    trained_networks = ()

    def ddp_networks(self):
        """Model attributes to wrap in DDP for training; by default the trained networks."""
        return self.trained_networks

    def has_unused_parameters(self, attr):
        """Whether network ``attr`` has trainable parameters its forward leaves without gradient (DDP must know)."""
        return False

    def __init__(self, model):
        self.model = model
        self.train_opt = model.opt['train']

    def build_weighted_loss(self, key):
        """``build_loss(train[key])`` on the model's device, or None when absent or ``loss_weight`` is 0.

        A zero weight never constructs the loss, so a perceptual loss whose weights are not on disk can be
        switched off from YAML.
        """
        loss_opt = self.train_opt.get(key)
        if not loss_opt or float(loss_opt.get('loss_weight', 1.0)) == 0:
            return None
        return build_loss(dict(loss_opt)).to(self.model.device)

    def prepare_networks(self):
        """Put the trained networks in train mode with gradients on (the model froze everything before)."""
        for attr in self.trained_networks:
            network = getattr(self.model, attr, None)
            if network is not None:
                network.train()
                network.requires_grad_(True)

    def trainable_parameters(self):
        """``(name, parameter)`` pairs ``train.optim_g`` optimises: by default the first trained network's."""
        return self.model.get_bare_model(getattr(self.model, self.trained_networks[0])).named_parameters()

    def setup_optimizers(self):
        """Create the stage's optimizers (``model.optimizer_g`` over :meth:`trainable_parameters`) as a list."""
        model = self.model
        model.optimizer_g = model.build_optimizer(self.trainable_parameters(), self.train_opt['optim_g'])
        return [model.optimizer_g]

    def state_dict(self):
        """State of the stage that lives outside networks and optimizers, for the training state (default none)."""
        return {}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` on resume."""

    @abstractmethod
    def optimize(self, current_iter):
        """One training step on ``model.lq`` / ``model.gt`` (``(B, 3, H, W)`` in [-1, 1]); returns a dict of tensors."""
