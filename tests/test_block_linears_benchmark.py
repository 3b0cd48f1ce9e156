"""benchmarks/block_linears.py times the linears generation runs at every scale, and both products agree."""
import sys

import torch

from helpers.runs import REPO
from helpers.tiny_restorevar import tiny_transformer
from restorevar_plugin.models.inference_linears import InferenceLinearWeights, PrepackedWeight

sys.path.insert(0, str(REPO / 'benchmarks'))
from block_linears import linear, per_scale_linears, read_plus_rows_seconds, transposed_linear  # noqa: E402


def test_per_scale_linears_leave_out_only_the_condition_key_value_projection():
    transformer = tiny_transformer()
    chosen = {id(layer) for layer in per_scale_linears(transformer)}
    every = [(name, module) for name, module in transformer.blocks.named_modules()
             if isinstance(module, torch.nn.Linear)]
    left_out = sorted(name.split('.', 1)[1] for name, module in every if id(module) not in chosen)
    assert left_out == ['cross_attn.kv_proj'] * transformer.depth
    assert len(chosen) == len(every) - transformer.depth


def test_transposed_product_equals_linear():
    torch.manual_seed(0)
    for layer in (torch.nn.Linear(24, 40), torch.nn.Linear(24, 40, bias=False)):
        for rows in (1, 9, 37):
            x = torch.randn(rows, 24)
            result = transposed_linear(x, layer)
            assert result.shape == (rows, 40) and result.is_contiguous()
            torch.testing.assert_close(result, layer(x), atol=1e-5, rtol=1e-5)


def test_prepacked_product_equals_linear():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(24, 40), torch.nn.Linear(40, 24, bias=False)]
    x = torch.randn(9, 24)
    expected = layers[1](layers[0](x))
    with InferenceLinearWeights().use(layers):
        assert all(isinstance(layer.weight, PrepackedWeight) for layer in layers)
        result = linear(linear(x, layers[0]), layers[1])
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-5)


def test_read_plus_rows_line_passes_through_both_passes_and_is_linear_between():
    fewest, most = (1, 0.034), (680, 0.951)
    assert read_plus_rows_seconds(1, fewest, most) == 0.034
    assert abs(read_plus_rows_seconds(680, fewest, most) - 0.951) < 1e-12
    per_row = (0.951 - 0.034) / 679
    assert abs(read_plus_rows_seconds(256, fewest, most) - (0.034 + 255 * per_row)) < 1e-12
    # ten passes on the line cost the full pass plus nine more weight reads (the intercept's share)
    rows = [1, 4, 9, 16, 25, 36, 64, 100, 169, 256]
    total = sum(read_plus_rows_seconds(r, fewest, most) for r in rows)
    assert abs(total - (0.951 + 9 * (0.034 - per_row))) < 1e-9
