"""Tiled application of fixed-size functions: tile layout, exact identity, seamless blending."""
import pytest
import torch

from restorevar_plugin.tiling import axis_window, edge_ramp, tile_count, tile_starts, tiled_apply


@pytest.mark.parametrize('length, tile, overlap', [(64, 64, 16), (65, 64, 16), (200, 64, 16), (37, 16, 4),
                                                   (1000, 512, 128), (50, 16, 0)])
def test_tiles_cover_the_axis_with_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] == length - tile
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0 < gap <= tile - overlap for gap in gaps)
    assert max(gaps, default=0) - min(gaps, default=0) <= 1  # spread evenly


def test_ramps_of_neighbours_sum_to_one_and_never_vanish():
    ramp = edge_ramp(16)
    assert torch.allclose(ramp + ramp.flip(0), torch.ones(16)) and ramp.min() > 0
    window = axis_window(64, 16, rise=True, fall=False)
    assert torch.equal(window[16:], torch.ones(48)) and torch.equal(window[:16], ramp)


@pytest.mark.parametrize('size', [(37, 51), (10, 12), (64, 64), (16, 130)])
def test_identity_function_gives_the_input_back_at_any_size(size):
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    calls = []

    def identity(tiles):
        calls.append(tuple(tiles.shape))
        return tiles

    out = tiled_apply(identity, images, tile=16, overlap=4, batch_size=5)
    assert out.shape == images.shape
    assert torch.allclose(out, images, atol=1e-6)
    assert all(shape[0] <= 5 and shape[1:] == (3, 16, 16) for shape in calls)
    assert sum(shape[0] for shape in calls) == 2 * tile_count(*size, tile=16, overlap=4)


def tile_mean_shift(tiles):
    """Identity plus a per-tile offset: hard-cut tiling of a gradient would show a step at every border."""
    return tiles + 0.25 * (tiles.mean(dim=(1, 2, 3), keepdim=True) - 0.5)


def max_horizontal_step(image):
    return (image[..., 1:] - image[..., :-1]).abs().max().item()


def test_blending_hides_tile_borders_on_a_smooth_gradient():
    width = 192  # three 64-px tiles without overlap, four with
    gradient = torch.linspace(0, 1, width).expand(1, 3, 48, width).contiguous()
    own_step = max_horizontal_step(gradient)
    blended = tiled_apply(tile_mean_shift, gradient, tile=64, overlap=16, batch_size=4)
    hard_cut = tiled_apply(tile_mean_shift, gradient, tile=64, overlap=0, batch_size=4)
    # bound: the gradient's own step plus 2/255; a hard cut between tiles jumps by ~21/255
    assert max_horizontal_step(blended) <= own_step + 2 / 255
    assert max_horizontal_step(hard_cut) > own_step + 10 / 255


def test_bad_arguments_are_named():
    images = torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match='0 <= overlap < tile'):
        tiled_apply(lambda x: x, images, tile=8, overlap=8)
    with pytest.raises(ValueError, match=r'images must be \(B, C, H, W\)'):
        tiled_apply(lambda x: x, images[0], tile=8, overlap=2)
    with pytest.raises(ValueError, match='expected the same batch and spatial size'):
        tiled_apply(lambda x: x[..., :4, :4], images, tile=8, overlap=2)
