"""Run a function in each process of a 2-process ``torch.distributed`` (gloo, CPU) group started by
``torch.multiprocessing.spawn``; each rank's return value is saved to ``<out>/rank<r>.pt``.

Spawned processes import the function's module afresh; importing this module first gives them the
package's compatibility shims before that module imports basicsr.
"""
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import restorevar_plugin  # noqa: F401  (compatibility shims before basicsr is imported)


def _run(rank, world_size, port, out, function, args):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        torch.save(function(*args), Path(out) / f'rank{rank}.pt')
        # no rank tears the group down while another still communicates: BasicSR's reduce_loss_dict is a reduce
        # to rank 0, which the other ranks leave before rank 0 has received (a gloo abort seen once in CI)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_on_ranks(function, args, out, world_size=2, port=29547):
    """``function(*args)`` on every rank of a gloo group; returns the list of per-rank results."""
    mp.spawn(_run, args=(world_size, port, str(out), function, args), nprocs=world_size, join=True)
    return [torch.load(Path(out) / f'rank{rank}.pt', weights_only=False) for rank in range(world_size)]
