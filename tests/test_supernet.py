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


def _shared_ids(slot) -> set[int]:
    """The parameters of a layer position that more than one of its block types hold."""
    seen: dict[int, int] = {}
    for block in slot.values():
        for p in block.parameters():
            seen[id(p)] = seen.get(id(p), 0) + 1
    return {k for k, n in seen.items() if n > 1}


def test_only_the_path_gets_gradients(space, tiny, net):
    arch = space.sample(5)
    x = torch.randn(2, 3, tiny.img_size, tiny.img_size)
    net.train()
    net(x, arch).sum().backward()
    for i, stage in enumerate(net.stages):
        for j, slot in enumerate(stage.blocks):
            run = slot[arch.stages[i][j].block] if j < arch.depths[i] else None
            ran = {id(p) for p in run.parameters()} if run is not None else set()
            shared = _shared_ids(slot)
            for block_type, block in slot.items():
                for name, p in block.named_parameters():  # a part shared across types counts as run when the path's type has it
                    assert (p.grad is not None) == (id(p) in ran), (i, j, block_type, name, id(p) in shared)
            if run is not None:
                assert any(id(p) in shared for p in run.parameters()) or len(slot) == 1, (i, j)


def test_block_types_at_a_layer_share_one_norm_and_mlp_parameter_set(space, tiny, net):
    from supernet.sharing import shared_parts

    checked = 0
    for stage in net.stages:
        for slot in stage.blocks:
            for role in ("mixer_norm", "mlp_norm", "mlp_fc1", "mlp_fc2"):
                members = [b.get_submodule(shared_parts(b)[role]) for b in slot.values() if role in shared_parts(b)]
                if len(members) < 2:
                    continue
                for m in members[1:]:
                    assert m is members[0]
                    for a, b in zip(members[0].parameters(), m.parameters()):
                        assert a.data_ptr() == b.data_ptr() and a.shape == b.shape
                checked += 1
            if {"mhsa", "stoken"} <= set(slot):  # the widest MLP of any type: a Linear, run as 1x1 conv by the ConvFFN
                assert slot["stoken"].ffn.fc1.weight is slot["mhsa"].mlp.fc1.weight
    assert checked >= len(net.stages)
    # one tensor, many names: a state dict whose names of one tensor disagree is refused, not loaded half
    state = net.state_dict()
    ptrs = [t.data_ptr() for t in state.values()]
    name = next(n for n, t in state.items() if n.endswith("fc1.weight") and ptrs.count(t.data_ptr()) > 1)
    state[name] = state[name] + 1
    with pytest.raises(RuntimeError, match="one tensor in this supernet"):
        Supernet(space, tiny).load_state_dict(state)


def test_extract_matches_the_path_for_every_block_type_and_merge(space, tiny, net):
    _randomize_norms(net)
    with torch.no_grad():  # shared weights differ from any one type's init, so a wrong copy shows
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randn(2, 3, tiny.img_size, tiny.img_size)
    for arch in _archs_covering_every_choice(space):
        with torch.no_grad():
            assert torch.equal(net(x, arch), net.extract(arch).eval()(x)), arch.to_json()


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


def test_a_map_is_formed_only_where_the_next_layer_reuses_it():
    from supernet.model import maps_handed_on

    kinds = ["mhsa", "shared", "mhsa", "mhsa", "maf", "stoken"]
    assert maps_handed_on(kinds) == [True, False, False, False, False, False]
    assert maps_handed_on(kinds, every_source=True) == [True, False, "detached", "detached", False, False]
    assert maps_handed_on([]) == []


def test_the_fused_attention_gives_the_written_out_output_and_map():
    from supernet.blocks.attention import DetachedMap, MhsaBlock, formed

    torch.manual_seed(0)
    block = MhsaBlock(16, 2)
    x = torch.randn(3, 4, 4, 16)
    written, attn = block(x, need_map=True)
    fused, none = block(x)
    detached_out, lazy = block(x, need_map="detached")
    detached = formed(lazy)
    assert none is None and attn.shape == (3, 2, 16, 16) and attn.requires_grad and not detached.requires_grad
    assert isinstance(lazy, DetachedMap) and formed(attn) is attn
    assert torch.allclose(fused, written, atol=1e-6) and torch.equal(detached_out, fused)
    assert torch.allclose(detached, attn.detach(), atol=1e-6)
    shared = MhsaBlock(16, 2, shared=True)
    with pytest.raises(ValueError, match="needs the previous layer's attention map"):
        shared(written, none)


def test_a_traced_path_hands_every_attention_sources_map_on_detached_where_no_layer_reads_it(space, tiny, net):
    from supernet.blocks.attention import DetachedMap, formed

    if "shared" not in {b for rule in space.stages for b in rule.blocks}:
        pytest.skip("no layer of this space reuses a map")
    arch = next(a for a in (space.sample(s) for s in range(500))
                if {"mhsa", "shared"} <= {l.block for layers in a.stages for l in layers}
                and any(l.block == "mhsa" and m.block != "shared" for layers in a.stages for l, m in zip(layers, layers[1:])))
    trace = []
    x = torch.randn(2, 3, tiny.img_size, tiny.img_size)
    traced = net(x, arch, trace)
    with torch.no_grad():
        assert torch.allclose(traced, net(x, arch), atol=1e-5)
    handed = {(i, j): attn for i, kind, j, _, _, attn in trace if kind == "block"}
    for i, layers in enumerate(arch.stages):
        for j in range(1, len(layers)):
            assert (handed[i, j] is not None) == (layers[j - 1].block in ("mhsa", "shared")), (i, j)  # a shared layer passes its map on
            read = "shared" in (layers[j].block, layers[j - 1].block)  # formed with its gradient for a shared layer: j's, or j-1's handed on
            if handed[i, j] is not None:  # otherwise formed only when the alignment reads it, without gradient
                assert isinstance(handed[i, j], DetachedMap) != read and formed(handed[i, j]).requires_grad == read, (i, j)
