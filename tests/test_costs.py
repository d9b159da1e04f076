import pytest
import timm
import torch

from nas.measure.costs import arch_costs, count_macs
from search_spaces import get_reference, reference_names
from supernet import ArchNet

N_ARCHS = 20


def _counted(model, img_size):
    return count_macs(model, torch.zeros(1, 3, img_size, img_size, device="meta"))


def test_analytic_macs_equal_counted_at_target_scale(space):
    """Built on the meta device: the counter sees every op's shapes without spending time on arithmetic."""
    scale = space.target
    references = [get_reference(space.name, name) for name in reference_names(space.name)]
    for seed, arch in [(seed, space.sample(1000 + seed)) for seed in range(N_ARCHS)] + list(zip(reference_names(space.name), references)):
        with torch.device("meta"):
            model = ArchNet(arch, scale)
        counted = _counted(model, scale.img_size)
        analytic = arch_costs(arch, scale)
        assert abs(analytic.macs - counted) <= 0.005 * counted, (seed, analytic.macs, counted)
        assert analytic.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, gmacs", [("deit_small_patch16_224", 4.6), ("deit_tiny_patch16_224", 1.25), ("deit_base_patch16_224", 17.6)])
def test_counter_includes_fused_attention(name, gmacs):
    with torch.device("meta"):
        model = timm.create_model(name)
    macs = _counted(model, 224)
    assert abs(macs / 1e9 - gmacs) <= 0.01 * gmacs, macs


def test_counter_counts_cpu_fused_attention_exactly():
    q = torch.randn(1, 2, 10, 8)
    attn = lambda x: torch.nn.functional.scaled_dot_product_attention(x, x, x)  # noqa: E731

    class M(torch.nn.Module):
        def forward(self, x):
            return attn(x)

    assert count_macs(M(), q) == 2 * 2 * 10 * 10 * 8  # QK^T and AV, per head
