"""A block type added from outside the package (tests/toy_block.py) runs through everything that reads
the vocabulary: sampling, mutation and Optuna, the supernet, extraction, timm, the cost model, the
latency parts."""
import optuna
import timm
import torch

import toy_block  # noqa: F401  (registers the dwconv block type and the toy_conv space)
from conftest import TINY
from nas.measure.costs import arch_costs, count_macs
from search_spaces import Arch, get_space
from supernet import ArchNet, Supernet
from supernet.parts import arch_parts, space_parts

SCALE = TINY["psvit_ext"]


def _with_dwconv(space, seeds=range(200)):
    archs = [space.sample(s) for s in seeds]
    return [a for a in archs if any(layer.block == "dwconv" for _, _, layer in a.layers())]


def test_sampling_mutation_and_optuna_propose_the_new_block():
    space = get_space("toy_conv")
    archs = _with_dwconv(space)
    assert archs and {layer.kernel for a in archs for _, _, layer in a.layers() if layer.block == "dwconv"} == {3, 5, 7}
    for a in archs[:20]:
        assert space.validate(Arch.from_json(a.to_json())) == a
        assert space.validate(space.mutate(a, 1, prob=0.5))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    proposed = [space.suggest(study.ask()) for _ in range(60)]
    assert any(layer.block == "dwconv" for a in proposed for _, _, layer in a.layers())
    assert any(name.endswith("_k") for t in study.trials for name in t.params)


def test_supernet_extract_and_costs_of_the_new_block():
    space = get_space("toy_conv")
    torch.manual_seed(0)
    net = Supernet(space, SCALE).eval()
    x = torch.randn(2, 3, SCALE.img_size, SCALE.img_size)
    for arch in _with_dwconv(space)[:8]:
        model = net.extract(arch).eval()
        with torch.no_grad():
            assert torch.allclose(model(x), net(x, arch), atol=1e-5)
        same = timm.create_model("toy_conv", arch=arch, scale=SCALE)
        assert {k: v.shape for k, v in same.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
        analytic = arch_costs(arch, SCALE)
        assert analytic.params == sum(p.numel() for p in model.parameters())
        counted = count_macs(model, torch.zeros(1, 3, SCALE.img_size, SCALE.img_size))
        assert abs(analytic.macs - counted) <= 0.005 * counted
        with torch.device("meta"):
            target = ArchNet(arch, space.target)
        assert arch_costs(arch, space.target).params == sum(p.numel() for p in target.parameters())


def test_latency_parts_cover_the_new_block():
    space = get_space("toy_conv")
    parts = space_parts(space, SCALE, batch_size=1)
    assert {k for k in parts if k.startswith("dwconv:")} and all(k in parts for a in _with_dwconv(space)[:20] for k in arch_parts(a, SCALE))
    factory, shape = parts[next(k for k in parts if k.startswith("dwconv:k7"))]
    assert factory()(torch.zeros(shape)).shape == shape
