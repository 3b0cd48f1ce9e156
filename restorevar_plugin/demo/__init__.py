"""The demo: its recipe as data (option files per budget), its shipped checkpoints and the code of ``basicsr demo``.

* :mod:`.recipe`: stages, budgets, where each stage's option file and weights are;
* :mod:`.training`: ``basicsr demo --train`` (every stage through ``basicsr train``, progress and ETA);
* :mod:`.shipping`: the fp16 shipped checkpoints and their manifest (sha256, size, command, time, machine);
* :mod:`.summary`: the demo's benchmark file and the per-degradation PSNR table with the targets.
"""
