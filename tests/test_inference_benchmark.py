"""benchmarks/inference.py runs every variant through the same model and reports what it times."""
import copy
import sys

import torch

from helpers.restorevar import tiny_test_model
from helpers.runs import REPO

sys.path.insert(0, str(REPO / 'benchmarks'))
from inference import VARIANTS, run_variant, teacher_forced_seconds  # noqa: E402


def test_every_variant_restores_and_the_exact_ones_agree_with_the_official_procedure(tmp_path):
    model = tiny_test_model(tmp_path)
    reference_vqvae = copy.deepcopy(model.net_vqvae)  # kept NCHW, as the official code runs
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    runs = {variant: run_variant(variant, model, reference_vqvae, images, torch.device('cpu')) for variant in VARIANTS}
    official_image, official_indices = runs['official'][1], runs['official'][2]
    assert torch.equal(runs['official-retained'][1], official_image)  # the allocator setting changes no value
    for variant in ('fp32-nchw', 'fp32-unpacked', 'fp32-unretained', 'fp32'):
        meter, restored, indices = runs[variant]
        assert all(torch.equal(a, b) for a, b in zip(indices, official_indices)), variant
        torch.testing.assert_close(restored, official_image, atol=1e-4, rtol=0)
        assert set(meter.seconds) == {'encoder', 'generation', 'refiner', 'decoder'} and meter.total() > 0
        assert meter.preparation >= 0
    assert model.opt['val']['precision'] == 'bf16' and runs['bf16'][1].dtype == torch.float32
    assert teacher_forced_seconds(model, images, official_indices) > 0


@torch.no_grad()
def test_flip_sources_runs_the_first_scales_in_fp32_under_bf16_autocast(tmp_path):
    from bf16_flip_sources import generated_indices

    model = tiny_test_model(tmp_path)
    model.net_g.eval()
    model.net_vqvae.eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    cond = model.net_vqvae.encode_features(images)
    reference = generated_indices(model, cond, bf16_transformer=False)
    scales = len(model.net_g.patch_nums)
    every_scale_fp32 = generated_indices(model, cond, bf16_transformer=True, fp32_scales=scales)
    assert all(torch.equal(a, b) for a, b in zip(reference, every_scale_fp32))
    mixed = generated_indices(model, cond, bf16_transformer=True, fp32_scales=1)
    assert [a.shape for a in mixed] == [a.shape for a in reference]
    assert torch.equal(mixed[0], reference[0])
    assert '_run_blocks' not in vars(model.net_g) and '_prepare_condition' not in vars(model.net_g)
