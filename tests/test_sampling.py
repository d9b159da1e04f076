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
    for strategy in ("sandwich", "sandwich-mixed", "fair", "uniform", "stratified", "progressive"):
        a, b = PathSampler(space, scale, strategy, seed=3), PathSampler(space, scale, strategy, seed=3)
        assert [a.paths(2, s) for s in range(5)] == [b.paths(2, s) for s in range(5)]
        drawn = (lambda paths: paths[2:]) if strategy.startswith("sandwich") or strategy == "progressive" else (lambda paths: paths)
        if strategy == "fair":  # its draws depend on the steps before: compare two fresh samplers' first steps
            a = PathSampler(space, scale, strategy, seed=3)
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


def test_progressive_opens_the_random_paths_stage_by_stage(ext):
    space, scale = ext
    sampler = PathSampler(space, scale, "progressive", seed=0, epochs=4)
    stages = len(space.stages)
    assert [sampler.open_stages(e) for e in range(4)] == [0, 2, 3, 4] and stages == 4
    for epoch in range(4):
        k = sampler.open_stages(epoch)
        steps = [sampler.paths(epoch, s) for s in range(40)]
        assert all(p[:2] == [sampler.largest, sampler.smallest] and space.validate(p[2]) == p[2] for p in steps)
        drawn = [p[2] for p in steps]
        assert all(a.stages[k:] == sampler.largest.stages[k:] and a.merges[max(k - 1, 0):] == sampler.largest.merges[max(k - 1, 0):]
                   for a in drawn)  # the stages not yet open keep the largest's choices
        for i in range(k):  # an open stage is drawn: it differs from the largest's on some step
            assert any(a.stages[i] != sampler.largest.stages[i] for a in drawn)
    assert PathSampler(space, scale, "progressive", epochs=1).open_stages(0) == stages


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
    with pytest.raises(ValueError, match="unknown sampling strategy 'spos'; allowed: sandwich, sandwich-mixed, sandwich-mixed-student, fair, uniform, stratified"):
        PathSampler(space, scale, "spos")
    with pytest.raises(ValueError, match="unknown path distribution 'flat'; allowed: choice, legal"):
        PathSampler(space, scale, "uniform", dist="flat")


def _ratios(uses: Counter, space) -> dict:
    """Per choice (a use key without its value), the largest over the smallest use count of its legal options."""
    from collections import defaultdict

    by_choice = defaultdict(dict)
    for key, n in uses.items():
        if key[0] != "depth":
            by_choice[key[:-1]][key[-1]] = n
    out = {}
    for choice, seen in by_choice.items():
        if choice[0] == "merge":
            legal = space.merges[choice[1]]
        elif choice[0] == "block":
            legal = space.stages[choice[1]].blocks_at(choice[2])
        else:
            legal = space.stages[choice[1]].values_of(choice[0])
        counts = [seen.get(v, 0) for v in legal]
        if len(counts) > 1:
            out[choice] = max(counts) / max(min(counts), 1e-9)
    return out


def test_fair_uses_every_option_of_every_choice_alike_and_its_teacher_too(ext):
    """Over 300 steps every merge, every block type of each layer and every width is within 1.5x of the other options
    of its choice, counted over all paths and over the teacher alone; the fixed sandwich is far from it."""
    from nas.training.sampling import choice_uses

    space, scale = ext
    for strategy, expect_fair in (("fair", True), ("sandwich", False)):
        sampler = PathSampler(space, scale, strategy, seed=0)
        every, teacher = Counter(), Counter()
        for step in range(300):
            paths = sampler.paths(0, step)
            assert all(space.validate(a) == a for a in paths)
            for k, arch in enumerate(paths):
                keys = list(choice_uses(arch))
                every.update(keys)
                teacher.update(keys if k == 0 else [])
        worst, worst_teacher = max(_ratios(every, space).values()), max(_ratios(teacher, space).values())
        if expect_fair:
            assert worst <= 1.5 and worst_teacher <= 1.5, (worst, worst_teacher)
            assert paths[0].depths == tuple(max(r.depths) for r in space.stages)  # the teacher is the deepest
            assert paths[1].depths == tuple(min(r.depths) for r in space.stages)
        else:
            assert worst > 10 and worst_teacher > 10


def test_fair_sampler_state_survives_a_checkpoint(ext, tmp_path):
    from nas.training.checkpoint import load_checkpoint, save_checkpoint

    space, scale = ext
    a = PathSampler(space, scale, "fair", seed=1)
    for step in range(40):
        a.paths(0, step)
    save_checkpoint({"sampler": a.state_dict()}, tmp_path / "c.pt")  # torch.load(weights_only=True) reads it back
    b = PathSampler(space, scale, "fair", seed=1)
    b.load_state_dict(load_checkpoint(tmp_path / "c.pt")["sampler"])
    restored = [b.paths(1, s) for s in range(10)]
    assert [a.paths(1, s) for s in range(10)] == restored
    fresh = PathSampler(space, scale, "fair", seed=1)
    assert [fresh.paths(1, s) for s in range(10)] != restored  # the draws depend on the counts, not on (epoch, step) alone


def test_exposure_bench_prints_the_balance_of_a_strategy():
    """bench/exposure.py at a small step count: fair within 1.5x, the fixed sandwich not (its teacher's favourites shown)."""
    import subprocess
    import sys

    from conftest import ROOT

    for strategy, verdict in (("fair", "yes"), ("sandwich", "no")):
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "exposure.py"), "--strategy", strategy, "--steps", "200"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        last = proc.stdout.strip().splitlines()[-1]
        assert last.startswith("largest ratio between two options of one choice:") and last.endswith(f"within 1.5x: {verdict}"), last
        if strategy == "sandwich":  # the fixed teacher runs stage 2's deepest layer as a super-token block every step
            import re

            assert re.search(r"stage 2 layer 8 block +stoken 1\.\d\d \(1\.00\)", proc.stdout), proc.stdout
