"""One optimisation step of a 2-process gloo run on CPU (b samples per rank) equals a 1-process step on the same 2b
samples: DDP averages the gradients of the per-rank mean losses, which is the gradient of the 2b-sample mean."""
import copy

import pytest
import torch
import torch.distributed as dist
from basicsr.models import build_model
from spawned_ranks import run_on_ranks

from helpers.restorevar import tiny_options
from helpers.runs import tiny_restoration_options

WORLD_SIZE = 2
PER_RANK = 2


def restoration_opt(tmp_path):
    opt = tiny_restoration_options('ddp_step', ema_decay=0.5)
    opt['train']['scheduler']['warmup_iter'] = 0
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    for key in ('models', 'training_states', 'visualization'):
        opt['path'][key] = str(tmp_path / key)
    return opt


def transformer_opt(tmp_path):
    opt = tiny_options('restorevar_stage1.yml', tmp_path)
    opt['network_g']['drop_path_rate'] = 0.0
    opt['train'].pop('amp', None)
    return opt


CASES = {'RestorationModel': restoration_opt, 'RestoreVARModel-transformer': transformer_opt}


def one_step(opt, batch, steps=1):
    """Build the model from seed 0, take ``steps`` (1 or 0) steps on ``batch``; returns the trained networks' state
    dicts."""
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(opt))
    for iteration in range(1, steps + 1):
        model.update_learning_rate(iteration)
        model.feed_data(batch)
        model.optimize_parameters(iteration)
    names = ['net_g'] + (['net_ema'] if getattr(model, 'net_ema', None) is not None else [])
    return {name: {key: value.detach().clone() for key, value in model.get_bare_model(getattr(model, name))
                   .state_dict().items()} for name in names}


def ddp_step(opt, batch):
    """One step on this rank's share of ``batch`` in the spawned gloo group; the trained state dicts."""
    rank = dist.get_rank()
    opt = dict(opt, dist=True, rank=rank, world_size=WORLD_SIZE)
    return one_step(opt, {key: value[rank * PER_RANK:(rank + 1) * PER_RANK] for key, value in batch.items()})


@pytest.mark.parametrize('case', sorted(CASES))
def test_two_process_step_equals_one_process_step_on_both_shares(tmp_path, case):
    opt = CASES[case](tmp_path)
    generator = torch.Generator().manual_seed(1)
    size = 32
    batch = {'lq': torch.rand(WORLD_SIZE * PER_RANK, 3, size, size, generator=generator),
             'gt': torch.rand(WORLD_SIZE * PER_RANK, 3, size, size, generator=generator)}
    expected = one_step(opt, batch)
    before = one_step(opt, batch, steps=0)

    actual = run_on_ranks(ddp_step, (opt, batch), tmp_path, world_size=WORLD_SIZE, port=29548)[0]
    assert sorted(actual) == sorted(expected)
    # AdamW's first step moves each weight by about lr * g / (|g| + eps): where a gradient is near 0 a rounding
    # difference in the all-reduced mean changes that weight's step by a visible fraction of lr (2% seen on an Intel
    # Xeon), while a missing or wrong all-reduce changes many steps by up to 2 lr
    atol = max(1e-6, 0.1 * opt['train']['optim_g']['lr'])
    moved = 0
    for name, state in expected.items():
        for key, value in state.items():
            torch.testing.assert_close(actual[name][key], value, atol=atol, rtol=1e-5,
                                       msg=lambda message, key=f'{name}.{key}': f'{key}: {message}')
            moved += int(not torch.equal(value, before[name][key]))
    assert moved > 0  # the step changed the weights, so the comparison is not between two initialisations
