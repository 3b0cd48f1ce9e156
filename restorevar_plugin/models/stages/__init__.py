"""Training stages of :class:`~restorevar_plugin.models.restorevar_model.RestoreVARModel` (``train.stage``)."""
from .decoder_stage import DecoderStage
from .refiner_stage import RefinerStage
from .tokenizer_stage import TokenizerStage
from .transformer_stage import TransformerStage

STAGES = {stage.name: stage for stage in (TransformerStage, DecoderStage, RefinerStage, TokenizerStage)}
