"""Checkpoints: every weight file's facts (:mod:`.facts`), reading any layout (:mod:`.loading`), and the
conversions of the official RestoreVAR / VAR transformer files (:mod:`.official`). Archs do no file I/O.
"""
from restorevar_plugin.checkpoints.facts import CHECKPOINTS, CheckpointFile, checkpoint_for_filename
from restorevar_plugin.checkpoints.loading import (
                                                   CheckpointError,
                                                   describe_load_error,
                                                   detect_layout,
                                                   is_torchscript_archive,
                                                   load_network,
                                                   load_state_dict,
                                                   resolve_checkpoint,
                                                   resolve_pretrained_file,
                                                   strict_load,
)
from restorevar_plugin.checkpoints.official import base_var_to_restorevar, load_official_restorevar, load_var_pretrained

__all__ = ['CHECKPOINTS', 'CheckpointError', 'CheckpointFile', 'checkpoint_for_filename', 'describe_load_error',
           'detect_layout', 'is_torchscript_archive', 'load_network', 'load_state_dict', 'resolve_checkpoint',
           'resolve_pretrained_file', 'strict_load', 'base_var_to_restorevar', 'load_official_restorevar',
           'load_var_pretrained']
