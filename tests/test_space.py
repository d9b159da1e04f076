import itertools
import random
from collections import Counter

import optuna
import pytest

from search_spaces import Arch, ArchError, Layer, SearchSpace, StageRule, get_space


def _ext_valid():
    return get_space("psvit_ext").sample(0)


def _with_layer(arch, i, j, layer):
    stage = arch.stages[i][:j] + (layer,) + arch.stages[i][j + 1:]
    return Arch(arch.space, arch.stages[:i] + (stage,) + arch.stages[i + 1:], arch.merges)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: _with_layer(a, 1, 0, Layer("conv3x3")), "stages[1][0].block: 'conv3x3' is not allowed in stage 1 (unknown block type); allowed: mhsa, shared, maf, strip, stoken"),
        (lambda a: _with_layer(a, 0, 0, Layer("mhsa", mlp_ratio=4)), "stages[0][0].block: 'mhsa' is not allowed in stage 0; allowed: maf, strip, stoken"),
        (lambda a: _with_layer(a, 2, 0, Layer("strip", strip_width=4, mlp_ratio=3)), "stages[2][0].strip_width: 4 is not allowed; allowed: 1, 3, 5, 7"),
        (lambda a: _with_layer(_with_layer(a, 2, 0, Layer("strip", strip_width=3, mlp_ratio=3)), 2, 1, Layer("shared", mlp_ratio=4)),
         "stages[2][1].block: 'shared' must follow an 'mhsa' layer in the same stage, but the previous layer is 'strip'"),
        (lambda a: _with_layer(a, 3, 0, Layer("shared", mlp_ratio=4)), "stages[3][0].block: 'shared' must follow an 'mhsa' layer in the same stage, but it is the first layer of its stage"),
        (lambda a: Arch(a.space, a.stages[:1] + (a.stages[1] * 3,) + a.stages[2:], a.merges), "layers is not allowed; allowed depths: 2, 3, 4, 5"),
        (lambda a: Arch(a.space, a.stages[:3], a.merges), "stages: 3 stages given; space psvit_ext has 4"),
        (lambda a: Arch("psvit", a.stages, a.merges), "space: 'psvit' does not match space 'psvit_ext'"),
        (lambda a: Arch(a.space, a.stages, ("pool", "avg", "spm")), "merges[1]: 'avg' is not allowed; allowed: pool, conv, spm"),
        (lambda a: _with_layer(a, 2, 0, Layer("stoken", grid=8, mlp_ratio=4)), "stages[2][0].grid: 8 is not allowed; allowed: 7, 14"),
        (lambda a: _with_layer(a, 2, 0, Layer("strip", strip_width=3, mlp_ratio=3, grid=7)), "stages[2][0].grid: not used by block 'strip'"),
        (lambda a: _with_layer(a, 2, 0, Layer("mhsa")), "stages[2][0].mlp_ratio: missing for block 'mhsa'; allowed: 2, 3, 4"),
    ],
)
def test_validation_names_field_and_allowed_values(mutate, message):
    space = get_space("psvit_ext")
    bad = mutate(_ext_valid())
    with pytest.raises(ArchError) as e:
        space.validate(bad)
    assert str(e.value) == message or message in str(e.value), str(e.value)


def test_psvit_total_depth_rule():
    space = get_space("psvit")
    arch = space.sample(0)
    layer = Layer("mhsa", mlp_ratio=4)
    short = Arch("psvit", ((layer,), (layer,) * 4, (layer,)), arch.merges)
    with pytest.raises(ArchError) as e:
        space.validate(short)
    assert "total depth 6 is not allowed; allowed totals: 10, 11, 12, 13, 14" in str(e.value)


def test_sampling_is_seeded_and_legal(space):
    assert space.sample(7) == space.sample(7)
    archs = [space.sample(s) for s in range(50)]
    for a in archs:
        space.validate(a)
    assert len(set(archs)) > 40


def _toy_space():
    target = get_space("psvit_ext").target
    proxy = get_space("psvit_ext").proxy
    return SearchSpace(
        name="toy",
        stages=(
            StageRule(depths=(1, 2), blocks=("strip", "stoken"), strip_widths=(1, 3), grids=(7,)),
            StageRule(depths=(1, 2, 3), blocks=("mhsa", "shared", "strip"), mlp_ratios=(2, 4), strip_widths=(3,)),
            StageRule(depths=(1,), blocks=("mhsa",), mlp_ratios=(4,)),
            StageRule(depths=(1,), blocks=("maf",), gld_ratios=(0.25, 0.5), windows=(2,)),
        ),
        merges=(("pool", "conv"), ("pool",), ("spm",)),
        target=target,
        proxy=proxy,
    )


def _enumerate(space):
    out = []
    for depths in space.depth_tuples():
        per_stage = [list(itertools.product(space.stages[i].options(), repeat=d)) for i, d in enumerate(depths)]
        for stages in itertools.product(*per_stage):
            for merges in itertools.product(*space.merges):
                a = Arch(space.name, tuple(stages), tuple(merges))
                try:
                    out.append(space.validate(a))
                except ArchError:
                    pass
    return out


def test_cardinality_equals_enumeration_and_sampling_is_uniform():
    space = _toy_space()
    legal = _enumerate(space)
    assert space.cardinality() == len(legal) == len(set(legal))
    n = 40 * len(legal)
    counts = Counter(space.sample(random.Random(s)) for s in range(n))
    assert set(counts) <= set(legal)
    # chi-square against uniform: df = len-1; 99.9th percentile well below 2*df for these sizes
    expected = n / len(legal)
    chi2 = sum((counts.get(a, 0) - expected) ** 2 / expected for a in legal)
    assert chi2 < 2 * (len(legal) - 1), chi2


def test_cardinality_of_builtin_spaces():
    # psvit: per stage, sequences over {mhsa, shared} where shared follows mhsa are Fibonacci numbers
    fib = [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233]  # legal sequences of length n: the first layer cannot share
    space = get_space("psvit")
    expected = sum(fib[a] * fib[b] * fib[c] for a, b, c in space.depth_tuples())
    assert space.cardinality() == expected


def test_mutate_gives_a_legal_different_neighbour(space):
    rng = random.Random(0)
    arch = space.sample(3)
    for _ in range(30):
        new = space.mutate(arch, rng)
        assert new != arch
        space.validate(new)
        arch = new


def test_optuna_define_by_run_with_conditional_params(space):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        arch = space.suggest(trial)
        space.validate(arch)
        seen.add(arch)
        # conditional parameters: exactly the existing layers with more than one legal block type have one
        n_block_params = sum(1 for k in trial.params if k.endswith("_block") or k.endswith("_block_after_mhsa"))
        choosable = 0
        for i, j, layer in arch.layers():
            can_share = j > 0 and arch.stages[i][j - 1].block == "mhsa"
            choosable += len([b for b in space.stages[i].blocks if b != "shared" or can_share]) > 1
        assert n_block_params == choosable
        study.tell(trial, float(sum(arch.depths)))
    assert len(seen) > 20


def test_optuna_params_reproduce_the_arch():
    space = get_space("psvit_ext")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    arch = space.suggest(trial)
    fixed = optuna.trial.FixedTrial(trial.params)
    assert space.suggest(fixed) == arch


def test_sample_by_choice_is_legal_and_uniform_per_choice():
    space = get_space("psvit_ext")
    rng = random.Random(0)
    archs = [space.sample_by_choice(rng) for _ in range(4000)]
    for a in archs[:200]:
        space.validate(a)
    assert space.sample_by_choice(5) == space.sample_by_choice(5)
    for i, rule in enumerate(space.stages):
        depths = Counter(a.depths[i] for a in archs)
        assert set(depths) == set(rule.depths)
        for d in rule.depths:  # each depth ~ 1/len(depths); 4000 draws: 4 standard errors < 0.04
            assert abs(depths[d] / len(archs) - 1 / len(rule.depths)) < 0.04, (i, depths)
        first = Counter(a.stages[i][0].block for a in archs)
        assert set(first) == set(rule.blocks) - {"shared"}
    # the legal-uniform sampler, by contrast, almost never picks a 3-layer stage 2 (its sequences outnumber 3-layer
    # ones by a factor of about 25 per added layer); by choice, each of the 8 depths is drawn an eighth of the time
    assert sum(space.sample(s).depths[2] == 3 for s in range(300)) == 0
    assert abs(sum(a.depths[2] == 3 for a in archs) / len(archs) - 1 / 8) < 0.04
