"""The patch schedules (side of each scale's token grid) the benchmarks run at, by image size in px.

512 px is RestoreVAR's schedule (``RESTOREVAR_PATCH_NUMS``, VAR's 512-px one); 256 px is VAR's 256-px schedule.
Both end at the latent side, size / 16.
"""
from restorevar_plugin.archs.restorevar_arch import RESTOREVAR_PATCH_NUMS

PATCH_NUMS = {256: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16), 512: RESTOREVAR_PATCH_NUMS}
