"""Choices with one meaning at every scale, and the space-level promises of issue 14: the partition
table of docs/search_spaces.md against the built modules, padded keys masked, the budget fraction, the
rule texts against the cost model, and an extracted model that scores what the search scored."""
import itertools

import pytest
import torch

from conftest import ROOT, TINY, toy_npz
from nas.measure.costs import arch_costs
from nas.spaces import partition_rows, partition_table
from search_spaces import Layer, get_space
from supernet.blocks import block_cost, make_block
from supernet.blocks.attention import Attention
from supernet.blocks.maf import WindowAttention


def _attention_sequence_lengths(block, layer, x):
    """The (batch, tokens) shapes every Attention inside `block` is called with when it runs `layer` on `x`."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape[:2])))
             for m in block.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        block(x, None, layer)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("space_name", ["psvit_ext"])
def test_partition_table_matches_the_built_modules_at_proxy_and_target(space_name):
    space = get_space(space_name)
    rows = partition_rows(space)
    assert {(r["field"], r["stage"]) for r in rows} >= {("grid", i) for i in range(4)} | {("windows", 0), ("windows", 1)}
    for row in rows:
        for scale in (space.proxy, space.target):
            i, expect = row["stage"], row[scale.name]
            side, dim, heads = scale.grids()[i], scale.embed_dims[i], scale.num_heads[i]
            if row["field"] == "grid":
                layer = Layer("stoken", grid=row["value"], mlp_ratio=2)
            else:
                layer = Layer("maf", windows=row["value"], mlp_ratio=2, gld_ratio=0.25)
            block = make_block(layer, dim, heads, side, scale).eval()
            calls = _attention_sequence_lengths(block, layer, torch.randn(1, side, side, dim))
            if row["field"] == "grid":  # the attention among super tokens: parts^2 of them (all tokens when the cell is 1)
                assert calls == [(1, expect["parts"] ** 2)], (row, scale.name, calls)
            else:  # window attention: parts^2 windows of cell^2 tokens (then the block's MLP and fusion, no Attention)
                assert calls == [(expect["parts"] ** 2, expect["cell"] ** 2)], (row, scale.name, calls)
    docs = (ROOT / "docs" / "search_spaces.md").read_text()
    assert "\n".join(partition_table(space)) in docs


def test_stvit_cells_at_224_are_the_same_partition_at_the_proxy():
    rows = {(r["field"], r["value"], r["stage"]): r for r in partition_rows(get_space("psvit_ext"))}
    r = rows[("grid", 7, 0)]
    assert (r["target"]["cell"], r["target"]["parts"]) == (8, 7) and (r["proxy"]["cell"], r["proxy"]["parts"]) == (5, 7)
    r = rows[("windows", 8, 0)]
    assert (r["target"]["cell"], r["target"]["parts"]) == (7, 8) and (r["proxy"]["cell"], r["proxy"]["parts"]) == (4, 8)


def test_values_of_a_choice_are_distinct_partitions_at_both_scales():
    """Two values of a per-side choice in one stage never give the same cell (the same operator) at either scale."""
    rows = partition_rows(get_space("psvit_ext"))
    for scale in ("proxy", "target"):
        seen = {}
        for r in rows:
            key = (r["field"], r["stage"])
            assert r[scale]["cell"] not in seen.setdefault(key, set()), (scale, r)
            seen[key].add(r[scale]["cell"])


def _one_choice_apart(space, arch, rng):
    """Architectures that differ from `arch` in one choice: a merge, a layer's block type, or one of a layer's fields."""
    import json

    from search_spaces import Arch, ArchError
    from search_spaces.vocabulary import BLOCKS

    d = arch.to_dict()
    out = []
    for b, ops in enumerate(space.merges):
        for op in ops:
            if op != d["merges"][b]:
                e = json.loads(json.dumps(d))
                e["merges"][b] = op
                out.append(e)
    for i, stage in enumerate(d["stages"]):
        rule = space.stages[i]
        for j, layer in enumerate(stage):
            for name in BLOCKS[layer["block"]].fields:
                for value in rule.values_of(name):
                    if value != layer[name]:
                        e = json.loads(json.dumps(d))
                        e["stages"][i][j][name] = value
                        out.append(e)
            for block in rule.blocks:
                if block != layer["block"]:
                    e = json.loads(json.dumps(d))
                    e["stages"][i][j] = {"block": block, **{f: rng.choice(rule.values_of(f)) for f in BLOCKS[block].fields}}
                    out.append(e)
    legal = []
    for e in out:
        try:
            legal.append(space.validate(Arch.from_dict(e)))
        except ArchError:
            continue
    return legal


def test_no_two_architectures_the_target_prices_differently_are_one_computation_at_the_proxy():
    """Random pairs one choice apart with different target costs give different proxy outputs (with 16/8/4/2-token
    grids, 7 and 14 super tokens per side were one global attention in stages 1-2, strip widths 3/5/7 one operator
    in stage 3)."""
    import random

    from supernet import Supernet

    space = get_space("psvit_ext")
    net = Supernet(space, "proxy").eval()
    x = torch.randn(2, 3, space.proxy.img_size, space.proxy.img_size)
    rng = random.Random(0)
    pairs = same = 0
    kinds = set()
    with torch.no_grad():
        for seed in range(6):
            a = space.sample_by_choice(seed)
            out_a = net(x, a)
            cost_a = arch_costs(a, space.target)
            neighbours = _one_choice_apart(space, a, rng)
            for b in rng.sample(neighbours, min(14, len(neighbours))):
                if arch_costs(b, space.target) == cost_a:
                    continue
                pairs += 1
                same += torch.equal(out_a, net(x, b))
                kinds.add(next(k for k in ("merges", "stages") if getattr(a, k) != getattr(b, k)))
    assert pairs >= 60 and kinds == {"merges", "stages"}, (pairs, kinds)
    assert same == 0, f"{same} of {pairs} pairs with different target costs computed the same proxy outputs"


def test_per_side_values_are_distinct_operators_at_the_proxy_in_every_stage():
    """Every per-side value and strip width, changed alone in every stage where it is allowed, changes the proxy output."""
    import random

    from search_spaces import Arch, ArchError
    from supernet import Supernet

    space = get_space("psvit_ext")
    net = Supernet(space, "proxy").eval()
    x = torch.randn(2, 3, space.proxy.img_size, space.proxy.img_size)
    checked = set()
    with torch.no_grad():
        for seed in range(400):
            a = space.sample_by_choice(random.Random(seed))
            d = a.to_dict()
            for i, stage in enumerate(d["stages"]):
                for j, layer in enumerate(stage):
                    for name in ("grid", "strip_width"):
                        if name not in layer:
                            continue
                        for value in space.stages[i].values_of(name):
                            if value == layer[name] or (name, i, value) in checked:
                                continue
                            e = {**d, "stages": [list(s) for s in d["stages"]]}
                            e["stages"][i][j] = {**layer, name: value}
                            try:
                                b = space.validate(Arch.from_dict(e))
                            except ArchError:
                                continue
                            assert not torch.equal(net(x, a), net(x, b)), (name, i, layer[name], value)
                            checked.add((name, i, value))
    expected = {("grid", i, v) for i, r in enumerate(space.stages) if "stoken" in r.blocks for v in r.grids if len(r.grids) > 1}
    expected |= {("strip_width", i, v) for i, r in enumerate(space.stages) if "strip" in r.blocks for v in r.strip_widths}
    assert checked == expected, expected - checked


def test_padded_window_keys_are_masked():
    """A 5x5 grid in 3x3 windows is padded to 6x6; every output equals attention over the real tokens of its window only."""
    torch.manual_seed(0)
    wa = WindowAttention(8, 2).eval()
    x = torch.randn(1, 5, 5, 8)
    with torch.no_grad():
        out = wa(x, 3)
        for r0, c0 in itertools.product((0, 3), (0, 3)):
            window = x[:, r0:r0 + 3, c0:c0 + 3]
            h, w = window.shape[1:3]
            alone, _ = wa.attn(window.reshape(1, h * w, 8))
            assert torch.allclose(out[:, r0:r0 + h, c0:c0 + w].reshape(1, h * w, 8), alone, atol=1e-6)


@pytest.mark.parametrize("space_name", ["psvit", "psvit_ext"])
def test_the_budget_is_inside_the_mac_range(space_name):
    space = get_space(space_name)
    within = sum(arch_costs(space.sample(s), space.target).macs <= 4.5e9 for s in range(1000)) / 1000
    assert 0.2 <= within <= 0.8, within


def test_rule_texts_state_the_cost_model_figures():
    space = get_space("psvit_ext")
    t = space.target
    g, d, h = t.grids(), t.embed_dims, t.num_heads

    def gmacs(i, layers):
        values = [block_cost(layer, d[i], h[i], g[i], t)[0] / 1e9 for layer in layers]
        return f"{min(values):.2f}-{max(values):.2f}"

    ratios = space.stages[0].mlp_ratios
    maf = {i: [Layer("maf", mlp_ratio=r, gld_ratio=n, windows=space.stages[i].windows[0]) for r in ratios for n in (0.25, 0.5)]
           for i in (0, 1)}
    text = " ".join(space.rules)
    assert f"{gmacs(0, [Layer('mhsa', mlp_ratio=r) for r in ratios])} GMACs" in text
    assert f"against {gmacs(0, [Layer('stoken', grid=s, mlp_ratio=r) for s in (7, 14) for r in ratios])} for a super-token layer" in text
    assert f"{gmacs(0, [Layer('strip', strip_width=s, mlp_ratio=r) for s in (1, 3, 5, 7) for r in ratios])} for a Strip-MLP layer" in text
    assert f"a MAF block costs {gmacs(0, maf[0])} GMACs in stage 0 and {gmacs(1, maf[1])} in stage 1" in text
    gld = [(g[i] ** 2) * int(g[i] ** 2 * n) + int(g[i] ** 2 * n) for i in (0, 1) for n in (0.25, 0.5)]
    assert f"({gld[0] / 1e6:.2f}-{gld[1] / 1e6:.2f}M params per block at 56x56, {gld[2] / 1e6:.2f}-{gld[3] / 1e6:.2f}M at 28x28)" in text


def test_extracted_model_scores_the_inherited_accuracy(tmp_path):
    """Supernet.extract(arch, calib=...) recalibrates BatchNorm as evaluate() does: on the same batches the
    extracted model's validation accuracy is the inherited accuracy, and its logits are the path's."""
    from nas.data import make_loader
    from nas.measure.evaluate import calibration_loader, evaluate, model_accuracy
    from nas.training.supernet_trainer import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(space="psvit_ext", data=toy_npz(tmp_path / "toy.npz"), custom_scale=TINY["psvit_ext"].to_dict(),
                                  epochs=1, batch_size=16, out=str(tmp_path / "run"), val_fraction=0.25, warmup_epochs=0,
                                  device="cpu"), log=lambda *_: None)
    trainer.run()
    net, bundle = trainer.net.eval(), trainer.bundle
    val = make_loader(bundle, "val", 256)
    archs = [a for a in (trainer.space.sample(s) for s in range(40)) if any(l.block in ("stoken", "strip") for _, _, l in a.layers())][:3]
    assert archs
    for arch in archs:
        inherited = evaluate(net, arch, val, calibration_loader(bundle), calib_batches=3)
        model = net.extract(arch, calib=itertools.islice(calibration_loader(bundle), 3)).eval()
        assert model_accuracy(model, val) == inherited
        plain = net.extract(arch).eval()  # the supernet's mixed statistics: another model
        x = next(iter(val))[0]
        assert not torch.allclose(plain(x), model(x))


def test_docs_hold_what_nas_spaces_prints():
    """docs/search_spaces.md is `python -m nas.spaces --samples 1000 --flops 4.5G`, regenerated."""
    from nas.spaces import describe

    docs = (ROOT / "docs" / "search_spaces.md").read_text()
    for name in ("nb201", "psvit", "psvit_ext"):
        assert describe(name, 1000, 4.5e9) in docs, f"regenerate docs/search_spaces.md: the {name} section differs"
