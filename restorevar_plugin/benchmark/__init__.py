"""``basicsr benchmark``: methods side by side on the same datasets, under one protocol and one cost convention.

Modules: :mod:`~.options` (the option file), :mod:`~.runner` (running with a per-image cache),
:mod:`~.cost` (parameters, FLOPs, time; the latent-diffusion reference), :mod:`~.tables` (quality and cost
tables), :mod:`~.grids` (comparison pictures), :mod:`~.report` (the HTML page), :mod:`~.provenance`, and
:mod:`~.pipeline` (``run_benchmark``, which ties them together).
"""
