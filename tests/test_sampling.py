"""Which paths a supernet training step runs (nas.sampling.PathSampler)."""
from collections import Counter

import numpy as np
import pytest

from nas.measure.costs import arch_costs
from nas.training.sampling import PathSampler
from search_spaces import get_space


@pytest.fixture(scope="module")
def ext():
    space = get_space("psvit_ext")
    return space, space.proxy


def test_same_seed_epoch_step_gives_the_same_paths_on_every_worker(ext):
    space, scale = ext
    for strategy in ("sandwich", "sandwich-mixed", "uniform", "stratified"):
        a, b = PathSampler(space, scale, strategy, seed=3), PathSampler(space, scale, strategy, seed=3)
        assert [a.paths(2, s) for s in range(5)] == [b.paths(2, s) for s in range(5)]
        drawn = (lambda paths: paths[2:]) if strategy.startswith("sandwich") else (lambda paths: paths)
        assert drawn(a.paths(2, 0)) != drawn(a.paths(2, 1))
        assert drawn(PathSampler(space, scale, strategy, seed=4).paths(2, 0)) != drawn(a.paths(2, 0))


def test_sandwich_runs_largest_smallest_and_random(ext):
    space, scale = ext
    sampler = PathSampler(space, scale, "sandwich", seed=0, num_random=2)
    paths = sampler.paths(0, 0)
    assert len(paths) == 4 and paths[0] == sampler.largest and paths[1] == sampler.smallest
    macs = [arch_costs(space.sample_by_choice(s), scale).macs for s in range(300)]
    assert arch_costs(sampler.largest, scale).macs >= max(macs) and arch_costs(sampler.smallest, scale).macs <= min(macs)


def test_sandwich_mixed_draws_the_extremes_merges(ext):
    space, scale = ext
    sampler = PathSampler(space, scale, "sandwich-mixed", seed=0)
    steps = [sampler.paths(0, s) for s in range(60)]
    for paths in steps:
        assert [a.stages for a in paths[:2]] == [sampler.largest.stages, sampler.smallest.stages]
        assert all(space.validate(a) == a for a in paths)
    for k in (0, 1):  # each extreme meets every merge op at every boundary
        for b, ops in enumerate(space.merges):
            assert Counter(p[k].merges[b] for p in steps).keys() == set(ops)


def test_random_paths_follow_the_chosen_distribution(ext):
    space, scale = ext
    by_choice = PathSampler(space, scale, "uniform", seed=0, dist="choice")
    legal = PathSampler(space, scale, "uniform", seed=0, dist="legal")
    shallow_choice = sum(by_choice.paths(0, s)[0].depths[2] == 3 for s in range(300))
    shallow_legal = sum(legal.paths(0, s)[0].depths[2] == 3 for s in range(300))
    assert shallow_choice > 20 and shallow_legal == 0  # by choice: 8 depths, about an eighth of 300 draws


def test_stratified_spreads_paths_over_mac_bins(ext):
    space, scale = ext
    sampler = PathSampler(space, scale, "stratified", seed=0, bins=4)
    edges = sampler.edges
    macs = [arch_costs(sampler.paths(0, s)[0], scale).macs for s in range(200)]
    assert all(edges[0] <= m <= edges[-1] for m in macs)
    bins = Counter(np.digitize(macs, edges[1:-1]))
    assert min(bins[b] for b in range(4)) >= 30
    # unstratified paths, by contrast, crowd the middle bins
    uniform = Counter(np.digitize([arch_costs(space.sample_by_choice(s), scale).macs for s in range(200)], edges[1:-1]))
    assert min(uniform[b] for b in range(4)) < 30


def test_unknown_strategy_or_distribution(ext):
    space, scale = ext
    with pytest.raises(ValueError, match="unknown sampling strategy 'spos'; allowed: sandwich, sandwich-mixed, uniform, stratified"):
        PathSampler(space, scale, "spos")
    with pytest.raises(ValueError, match="unknown path distribution 'flat'; allowed: choice, legal"):
        PathSampler(space, scale, "uniform", dist="flat")
