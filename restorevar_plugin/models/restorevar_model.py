"""``RestoreVARModel``: the three RestoreVAR training stages (plus tokenizer training) and full-pipeline testing.

Networks (BasicSR option blocks; each optional except ``network_vqvae``):

=================== ============================= ===============================================
option              attribute                     class
=================== ============================= ===============================================
``network_vqvae``   ``net_vqvae``                 ``MultiScaleVQVAE``
``network_g``       ``net_g``                     ``RestoreVARTransformer``
``network_refiner`` ``net_refiner``               ``LatentRefinerTransformer``
``network_d``       ``net_d``                     ``PatchGANDiscriminator`` (decoder/tokenizer GAN)
=================== ============================= ===============================================

Weights (``path``): ``pretrain_network_<x>`` (any layout of :mod:`restorevar_plugin.checkpoints`, e.g. the official
``vae_restorevar.ckpt`` for ``vqvae``), ``pretrain_restorevar`` (the official ``restorevar.pth`` into
``net_g`` + ``net_refiner``), ``pretrain_var`` (base ``var_d16.pth`` initialisation of ``net_g``), and
``pretrain_decoder`` (a second VQVAE checkpoint used only for decoding: the paper's "original decoder"
ablation). ``pretrain_network_<x>`` is applied last, so resuming overrides the initialisations.

``train.stage`` (see :mod:`restorevar_plugin.models.stages`) selects what is trained and saved; every
other network is frozen in eval mode. Testing always runs the whole pipeline (:meth:`restore`).
"""
import contextlib
from collections import OrderedDict
from copy import deepcopy

import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from einops import rearrange

from restorevar_plugin.checkpoints import load_official_restorevar, load_var_pretrained
from restorevar_plugin.evaluation import validate
from restorevar_plugin.models.inference_linears import InferenceLinearWeights
from restorevar_plugin.models.inference_options import (
    RESTOREVAR_INFERENCE_OPTION_SCHEMA,
    channels_last_requested,
    compile_requested,
    inference_autocast,
    inference_dtype,
    prepacked_linears_requested,
)
from restorevar_plugin.models.plugin_base_model import PluginBaseModel
from restorevar_plugin.models.stages import STAGES

NETWORKS = OrderedDict([('net_vqvae', 'network_vqvae'), ('net_g', 'network_g'), ('net_refiner', 'network_refiner'),
                        ('net_d', 'network_d')])


def _untimed(name):
    """Stand-in for :meth:`StepTimer.measure` when nobody reads the timings (no CUDA synchronisation)."""
    return contextlib.nullcontext()


@MODEL_REGISTRY.register()
class RestoreVARModel(PluginBaseModel):
    """RestoreVAR: VQVAE encoder -> transformer (greedy next-scale generation) -> refiner -> decoder.

    Images handed to and returned by the public methods are ``(B, 3, H, W)`` in [0, 1]; internally the
    networks work in [-1, 1].
    """

    supports_batched_validation = True
    # Option keys read by the model and its stages, for restorevar_plugin.option_schema.
    option_schema = {
        'train': {'stage': 'str', 'vq_weight': 'number', 'continuous_weight': 'number', 'dead_code_restart': 'dict',
                  'init_codebook_from_data': 'bool', 'label_smoothing': 'number', 'generate_in_train_mode': 'bool'},
        'val': {'save_grid': 'bool', 'use_refiner': 'bool', 'reconstruction': 'str',
                **RESTOREVAR_INFERENCE_OPTION_SCHEMA},
        'path': {'pretrain_var': 'str', 'pretrain_restorevar': 'str', 'pretrain_decoder': 'str'},
    }

    def __init__(self, opt):
        super().__init__(opt)
        for attr, key in NETWORKS.items():
            network = build_network(deepcopy(opt[key])).to(self.device) if opt.get(key) else None
            setattr(self, attr, network)
            if network is not None:
                self.print_network(network)
        if self.net_vqvae is None:
            raise ValueError('RestoreVARModel needs a network_vqvae block (MultiScaleVQVAE)')
        self.net_decoder = None
        self._linear_weights = InferenceLinearWeights()  # prepared on first inference (see transformer_linears)
        self.load_pretrained()
        self.broadcast_from_rank0(*self.networks().values())
        for network in self.networks().values():
            network.eval()
            network.requires_grad_(False)
        self.stage = None
        if self.is_train:
            self.init_training_settings()

    def networks(self):
        """``{attribute: module}`` of the networks that exist (bare, not DDP-wrapped)."""
        attrs = list(NETWORKS) + ['net_decoder']
        return {attr: self.get_bare_model(getattr(self, attr)) for attr in attrs if getattr(self, attr) is not None}

    # ------------------------------------------------------------------------------------------ weights
    def load_pretrained(self):
        """Apply ``path.pretrain_var``, ``pretrain_restorevar``, ``pretrain_decoder`` then ``pretrain_network_*``."""
        path_opt = self.opt['path']
        resuming = bool(path_opt.get('resume_state'))
        logger = get_root_logger()
        if path_opt.get('pretrain_var') and not resuming:
            self._require('net_g', 'path.pretrain_var')
            load_var_pretrained(path_opt['pretrain_var'], self.net_g)
        if path_opt.get('pretrain_restorevar'):
            self._require('net_g', 'path.pretrain_restorevar')
            report = load_official_restorevar(path_opt['pretrain_restorevar'], self.net_g, self.net_refiner)
            logger.info(f'Official RestoreVAR checkpoint: {report}')
        if path_opt.get('pretrain_decoder'):
            self.net_decoder = build_network(deepcopy(self.opt['network_vqvae'])).to(self.device)
            self.load_network(self.net_decoder, path_opt['pretrain_decoder'], True, 'params')
        for attr, key in NETWORKS.items():
            load_path = path_opt.get(f'pretrain_{key}')
            if load_path:
                self._require(attr, f'path.pretrain_{key}')
                suffix = key.removeprefix('network_')
                self.load_network(getattr(self, attr), load_path, path_opt.get(f'strict_load_{suffix}', True),
                                  path_opt.get(f'param_key_{suffix}', 'params'))

    def _require(self, attr, option):
        if getattr(self, attr) is None:
            raise ValueError(f'{option} is set but the option file has no {NETWORKS[attr]} block')

    # ----------------------------------------------------------------------------------------- training
    def init_training_settings(self):
        """Select the stage, unfreeze and wrap what it trains, EMA copy, optimizers and schedulers."""
        train_opt = self.opt['train']
        stage_name = train_opt.get('stage')
        if stage_name not in STAGES:
            raise ValueError(f'train.stage must be one of {", ".join(STAGES)}; got {stage_name!r}')
        self.stage = STAGES[stage_name](self)
        for attr in self.stage.trained_networks:
            if getattr(self, attr) is None:
                raise ValueError(f'train.stage {stage_name} trains {NETWORKS[attr]}, which the option file lacks')
        self.stage.prepare_networks()
        for attr in self.stage.ddp_networks():
            setattr(self, attr, self.model_to_device(getattr(self, attr), self.stage.has_unused_parameters(attr)))
        self.ema_decay = float(train_opt.get('ema_decay', 0))
        self.ema_network = self.stage.trained_networks[0]
        if self.ema_decay > 0:
            get_root_logger().info(f'EMA of {self.ema_network} with decay {self.ema_decay}')
            self.net_ema = deepcopy(self.get_bare_model(getattr(self, self.ema_network))).eval()
            self.net_ema.requires_grad_(False)
            load_path = self.opt['path'].get(f'pretrain_{NETWORKS[self.ema_network]}')
            if load_path:  # resuming or continuing: keep the averaged weights (falls back to params)
                self.load_network(self.net_ema, load_path, True, 'params_ema')
        self.optimizers.extend(self.stage.setup_optimizers())
        self.setup_schedulers()

    def feed_data(self, data):
        """``data['lq']`` / ``data['gt']`` ``(B, 3, H, W)`` in [0, 1] -> ``self.lq`` / ``self.gt`` in [-1, 1]."""
        super().feed_data(data)
        self.lq = data['lq'].to(self.device) * 2 - 1
        self.gt = data['gt'].to(self.device) * 2 - 1 if 'gt' in data else None

    def optimize_parameters(self, current_iter):
        """One step of the selected stage; losses averaged over processes into ``self.log_dict``."""
        self.log_dict = self.reduce_loss_dict(self.stage.optimize(current_iter))
        if self.ema_decay > 0:
            self.model_ema(self.ema_decay)

    def save(self, epoch, current_iter, label_suffix=None):
        """Save only the networks the stage trains (``params`` and, for the EMA network, ``params_ema``)."""
        for attr in self.stage.trained_networks:
            network = getattr(self, attr)
            if network is None:
                continue
            if attr == self.ema_network and self.ema_decay > 0:
                self.save_network([network, self.net_ema], attr, label_suffix or current_iter,
                                  param_key=['params', 'params_ema'])
            else:
                self.save_network(network, attr, label_suffix or current_iter)
        if label_suffix is None:
            self.save_training_state(epoch, current_iter)

    def extra_training_state(self):
        """The stage's own state (e.g. the tokenizer's code-usage update count)."""
        return {'stage': self.stage.state_dict()}

    def load_extra_training_state(self, state):
        """Restore the stage's own state saved by :meth:`extra_training_state`."""
        self.stage.load_state_dict(state.get('stage') or {})

    # ---------------------------------------------------------------------------------------- inference
    def _inference_network(self, attr):
        """The EMA copy when the stage trains ``attr`` with EMA, else the bare network."""
        if self.stage is not None and self.ema_decay > 0 and attr == self.ema_network:
            return self.net_ema
        network = getattr(self, attr)
        return None if network is None else self.get_bare_model(network)

    def latent_decoder(self, vqvae=None):
        """The VQVAE whose ``decode_latent`` turns restored latents into images: ``path.pretrain_decoder``'s when
        given (the stage-2 decoder beside the stage-1 tokenizer), else ``vqvae`` (default: ``net_vqvae``)."""
        if self.net_decoder is not None:
            return self.get_bare_model(self.net_decoder)
        return vqvae if vqvae is not None else self.get_bare_model(self.net_vqvae)

    def prepare_inference(self):
        """One-time preparation of a test run (not training: the networks may be trained in between).

        Stores the frozen VQVAE / decoder in the layout of ``val.channels_last``, compiles what
        ``val.compile`` asks for and prepares the transformer's Linear weights for ``val.precision`` (see
        :meth:`transformer_linears`). Idempotent; :meth:`restore` calls it, and cost counters call it first so
        that this setup is not counted as the cost of an image.
        """
        if self.is_train or getattr(self, '_inference_prepared', False):
            return
        val_opt = self.opt.get('val') or {}
        layout = torch.channels_last if channels_last_requested(val_opt) else torch.contiguous_format
        vqvaes = [net for attr, net in self.networks().items() if attr in ('net_vqvae', 'net_decoder')]
        for vqvae in vqvaes:
            vqvae.to(memory_format=layout)
        if compile_requested(val_opt):
            for vqvae in vqvaes:
                vqvae.encoder.compile()
                vqvae.decoder.compile()
            if self.net_refiner is not None:
                self.get_bare_model(self.net_refiner).compile()
        transformer = self._inference_network('net_g')
        if transformer is not None:
            with self.transformer_linears(transformer, inference_dtype(val_opt, self.device)):
                pass  # entering prepares the weights once, outside the per-image cost
        self._inference_prepared = True

    @contextlib.contextmanager
    def transformer_linears(self, transformer, dtype):
        """Context in which the transformer's Linear layers multiply with their prepared weights: on a CPU
        oneDNN-prepacked (unless ``val.prepacked_linears: false``), elsewhere cast once to ``dtype``. The blocks
        run in the autocast ``dtype`` (None = fp32), the output head (an fp32 island) in float32. The weights
        are prepared on first use and stay cached while the parameters are unchanged."""
        prepack = prepacked_linears_requested(self.opt.get('val'))
        with self._linear_weights.use([transformer.blocks], dtype, prepack), \
                self._linear_weights.use([transformer.head], None, prepack):
            yield

    def _inference_setup(self):
        """Autocast dtype and image layout of inference from ``val`` (see :mod:`.inference_options`).

        Returns:
            tuple[torch.dtype | None, torch.memory_format]: autocast dtype (None = fp32) and the layout of
            the images handed to the VQVAE.
        """
        self.prepare_inference()
        val_opt = self.opt.get('val') or {}
        layout = torch.channels_last if channels_last_requested(val_opt) else torch.contiguous_format
        return inference_dtype(val_opt, self.device), layout

    @torch.no_grad()
    def restore(self, lq, timer=None):
        """Full pipeline on a batch at the model resolution, in the precision of ``val.precision``.

        Args:
            lq (Tensor): ``(B, 3, R, R)`` degraded images in [-1, 1], ``R = MultiScaleVQVAE.image_size``
                (512 officially).
            timer (StepTimer | None): Accumulates the time of each step.

        Returns:
            Tensor: ``(B, 3, R, R)`` restored images in [-1, 1], float32.
        """
        measure = timer.measure if timer is not None else _untimed
        vqvae = self._inference_network('net_vqvae')
        transformer = self._inference_network('net_g')
        if transformer is None:
            raise ValueError('testing needs network_g (RestoreVARTransformer) and its weights')
        val_opt = self.opt.get('val') or {}
        refiner = self._inference_network('net_refiner') if val_opt.get('use_refiner', True) else None
        decoder = self.latent_decoder(vqvae)
        dtype, layout = self._inference_setup()
        training = {name: net.training for name, net in self.networks().items()}
        for network in self.networks().values():
            network.eval()
        with self.inference_memory(), inference_autocast(dtype, self.device):
            with measure('encoder'):
                cond = vqvae.encode_features(lq.contiguous(memory_format=layout))
            with measure('generation'), self.transformer_linears(transformer, dtype):
                generated = transformer.generate(cond, vqvae)
            latent = generated.f_hat
            if refiner is not None:
                with measure('refiner'):
                    tokens = refiner(rearrange(latent, 'b c h w -> b (h w) c'), generated.last_hidden)
                    latent = rearrange(tokens, 'b (h w) c -> b c h w', h=latent.shape[-2])
            with measure('decoder'):
                restored = decoder.decode_latent(latent.contiguous(memory_format=layout)).float()
        for name, network in self.networks().items():
            network.train(training[name])
        if timer is not None:
            timer.images += lq.shape[0]
        return restored.contiguous()

    @torch.no_grad()
    def reconstruct(self, images, discrete=True, timer=None):
        """The VQVAE's reconstruction of ``(B, 3, R, R)`` images in [-1, 1]: through the multi-scale tokens
        (``discrete``) or from the continuous latent (what the fine-tuned decoder is trained on)."""
        measure = timer.measure if timer is not None else _untimed
        vqvae = self._inference_network('net_vqvae')
        was_training = vqvae.training
        vqvae.eval()
        with measure('encoder'):
            latent = vqvae.encode_latent(images)
            if discrete:
                latent = vqvae.quantize.indices_to_fhat(vqvae.quantize.latent_to_indices(latent))
        with measure('decoder'):
            reconstruction = vqvae.decode_latent(latent)
        vqvae.train(was_training)
        if timer is not None:
            timer.images += images.shape[0]
        return reconstruction

    def test(self):
        """``self.output``: the full pipeline on ``self.lq`` (any size, see :meth:`restore_any_size`).

        A model without ``network_g`` (tokenizer or decoder training) has no pipeline to run: its output is
        the VQVAE's reconstruction of ``self.gt``, discrete for the tokenizer stage and continuous for the
        decoder stage (``val.reconstruction: discrete | continuous`` overrides).
        """
        timer = getattr(self, 'timer', None)
        if self.net_g is not None:
            self.output = self.restore_any_size(self.lq, timer)
            return
        if self.gt is None:
            raise ValueError('a RestoreVARModel without network_g can only reconstruct ground-truth images')
        default = 'continuous' if self.stage is not None and self.stage.name == 'decoder' else 'discrete'
        mode = (self.opt.get('val') or {}).get('reconstruction', default)
        if mode not in ('discrete', 'continuous'):
            raise ValueError(f'val.reconstruction must be discrete or continuous, got {mode!r}')
        self.output = self.reconstruct(self.gt, discrete=mode == 'discrete', timer=timer)

    @property
    def fixed_input_size(self):
        """Side ``R`` of the square images the pipeline works at (the VQVAE's ``patch_nums[-1] * downsample``)."""
        return self.get_bare_model(self.net_vqvae).image_size

    def restore_any_size(self, lq, timer=None):
        """Restore ``(B, 3, H, W)`` images in [-1, 1] of any size; the output has the input's size.

        The transformer and the refiner work on a fixed token grid (``patch_nums[-1]`` squared), i.e. on
        ``R x R`` images. Other inputs are resized (bicubic, antialiased) to ``R x R``, restored and resized
        back. Benchmarks following the paper resize input and GT to 512 with Lanczos in the dataset
        (``paper_512``), so this path is then the identity.
        """
        size = self.fixed_input_size
        height, width = lq.shape[-2:]
        if (height, width) == (size, size):
            return self.restore(lq, timer)
        resized = F.interpolate(lq, size=(size, size), mode='bicubic', antialias=True, align_corners=False)
        restored = self.restore(resized.clamp(-1, 1), timer)
        restored = F.interpolate(restored, size=(height, width), mode='bicubic', antialias=True, align_corners=False)
        return restored.clamp(-1, 1)

    def get_current_visuals(self):
        """``lq``, ``result`` and (when present) ``gt`` on the CPU, ``(B, 3, H, W)`` in [0, 1]."""
        visuals = OrderedDict(lq=(self.lq.detach().cpu() + 1) / 2, result=(self.output.detach().cpu() + 1) / 2)
        if self.gt is not None:
            visuals['gt'] = (self.gt.detach().cpu() + 1) / 2
        return visuals

    # --------------------------------------------------------------------------------------- validation
    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Every rank restores its share of the dataset (see :func:`restorevar_plugin.evaluation.validate`)."""
        self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Full-pipeline evaluation of a dataset through :func:`restorevar_plugin.evaluation.validate`.

        ``val.use_refiner`` switches the refiner; in training, an improvement of the first metric also saves
        the trained networks as ``<net>_best.pth``.
        """
        evaluation = validate(self, dataloader, current_iter, tb_logger, save_img)
        if self.is_train and evaluation.means and self.stage is not None:
            first = next(iter(evaluation.means))
            if self.best_metric_results[evaluation.dataset][first]['iter'] == current_iter:
                self.save(-1, current_iter, label_suffix='best')
