import pytest
import timm
import torch

from search_spaces import Arch, ArchError, Layer, get_reference, reference_names
from supernet import ArchNet, Supernet
from nas.measure.costs import arch_costs, count_params

N_ARCHS = 20


@pytest.fixture
def net(space, tiny):
    return Supernet(space, tiny).eval()


def _randomize_norms(model):
    """Non-trivial BatchNorm statistics, so that extraction must carry buffers too."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


def test_extract_matches_supernet_params_and_timm(space, tiny, net):
    _randomize_norms(net)
    x = torch.randn(2, 3, tiny.img_size, tiny.img_size)
    references = [get_reference(space.name, name) for name in reference_names(space.name)]
    assert references
    for seed, arch in [(seed, space.sample(seed)) for seed in range(N_ARCHS)] + [(name, a) for name, a in zip(reference_names(space.name), references)]:
        sub = net.extract(arch).eval()
        with torch.no_grad():
            diff = (net(x, arch) - sub(x)).abs().max().item()
        assert diff <= 1e-5, (seed, diff)
        assert count_params(sub) == arch_costs(arch, tiny).params
        built = timm.create_model(space.name, arch=arch, scale=tiny)
        assert [(k, v.shape) for k, v in built.state_dict().items()] == [(k, v.shape) for k, v in sub.state_dict().items()]


def test_extract_holds_copies_not_views(space, tiny, net):
    arch = space.sample(0)
    sub = net.extract(arch).eval()
    with torch.no_grad():
        for p in sub.parameters():
            p.add_(1.0)
    x = torch.randn(1, 3, tiny.img_size, tiny.img_size)
    with torch.no_grad():
        assert not torch.allclose(net(x, arch), sub(x))


def _archs_covering_every_choice(space):
    """A few legal archs that together use every block type, elastic value and merge operator."""
    archs = []
    for i, rule in enumerate(space.stages):
        for option in rule.options():
            # a sample whose stage i has at least two layers (a stage may be empty: psvit pools before any layer)
            base = next(a for a in (space.sample(len(archs) + 1000 * k) for k in range(100)) if len(a.stages[i]) >= 2)
            stage = list(base.stages[i])
            if option.block == "shared":
                stage[0] = Layer("mhsa", mlp_ratio=max(rule.mlp_ratios))
                stage[1] = option
                if len(stage) > 2 and stage[2].block == "shared":
                    stage[2] = stage[0]
            else:
                stage[0] = option
                if len(stage) > 1 and stage[1].block == "shared" and option.block != "mhsa":
                    stage[1] = Layer("mhsa", mlp_ratio=max(rule.mlp_ratios))
            arch = Arch(space.name, base.stages[:i] + (tuple(stage),) + base.stages[i + 1:], base.merges)
            archs.append(space.validate(arch))
    for b, ops in enumerate(space.merges):
        for op in ops:
            base = space.sample(100 + len(archs))
            archs.append(Arch(space.name, base.stages, base.merges[:b] + (op,) + base.merges[b + 1:]))
    return archs


def test_forward_backward_of_every_block_and_merge(space, tiny, net):
    net.train()
    x = torch.randn(2, 3, tiny.img_size, tiny.img_size)
    used = set()
    for arch in _archs_covering_every_choice(space):
        net.zero_grad()
        out = net(x, arch)
        assert out.shape == (2, tiny.num_classes)
        out.square().mean().backward()
        for i, j, layer in arch.layers():
            grads = [p.grad for p in net.stages[i].blocks[j][layer.block].parameters() if p.requires_grad]
            assert any(g is not None and g.abs().sum() > 0 for g in grads), (i, j, layer)
            used.add((i, layer))
        for b, op in enumerate(arch.merges):
            grads = [p.grad for p in net.stages[b + 1].downsample[op].parameters()]
            assert all(g is not None for g in grads), op
    assert used >= {(i, o) for i, r in enumerate(space.stages) for o in r.options()}


def test_only_the_path_gets_gradients(space, tiny, net):
    arch = space.sample(5)
    x = torch.randn(2, 3, tiny.img_size, tiny.img_size)
    net.train()
    net(x, arch).sum().backward()
    for i, stage in enumerate(net.stages):
        for j, slot in enumerate(stage.blocks):
            for block_type, block in slot.items():
                on_path = j < arch.depths[i] and arch.stages[i][j].block == block_type
                has_grad = any(p.grad is not None for p in block.parameters())
                assert has_grad == on_path, (i, j, block_type)


def test_supernet_rejects_another_space(space, tiny, net):
    other = "psvit" if space.name == "psvit_ext" else "psvit_ext"
    from search_spaces import get_space
    arch = get_space(other).sample(0)
    with pytest.raises(ArchError):
        net(torch.randn(1, 3, tiny.img_size, tiny.img_size), arch)


def test_timm_create_model_from_json_path(tmp_path, space, tiny):
    arch = space.sample(4)
    arch.save(tmp_path / "a.json")
    model = timm.create_model(space.name, arch=str(tmp_path / "a.json"), scale=tiny, num_classes=3, drop_path_rate=0.1)
    assert isinstance(model, ArchNet)
    assert model.eval()(torch.randn(1, 3, tiny.img_size, tiny.img_size)).shape == (1, 3)
    with pytest.raises(ArchError):
        timm.create_model(space.name)
