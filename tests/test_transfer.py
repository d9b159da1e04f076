"""Weight sharing that transfers: the transfer ratio and its reading, the old checkpoint layout refused, fair depths."""
import json
import math
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from nas.errors import UserError
from nas.measure.transfer import RELIABLE, swap_loss, transfer_lines, transfer_ratio
from nas.reporting.document import transfer_lines_of_run
from nas.training.checkpoint import KIND, load_checkpoint
from nas.training.sampling import PathSampler
from nas.training.supernet_trainer import TrainConfig
from search_spaces import get_space

from conftest import assert_user_error, run_main


def test_transfer_ratio_and_swap_loss_on_known_values():
    assert transfer_ratio(0.45, 0.6, 0.1) == pytest.approx(0.7)
    assert transfer_ratio(0.1, 0.6, 0.1) == 0.0
    assert math.isnan(transfer_ratio(0.5, 0.1, 0.1))  # the smallest path at chance: no ratio
    assert swap_loss(0.5, 0.3, 0.1) == pytest.approx(0.5)
    assert swap_loss(0.5, 0.05, 0.1) == pytest.approx(1.125)  # below chance costs more than all


def test_transfer_lines_say_when_the_ranking_is_unreliable():
    good = transfer_lines(0.1, 0.9, 0.6, 0.5)
    assert len(good) == 1 and "transfer ratio 0.80" in good[0] and "chance 0.100" in good[0]
    bad = transfer_lines(0.1, 0.965, 0.5, 0.153)
    assert "transfer ratio 0.13" in bad[0]
    assert len(bad) == 2 and f"below {RELIABLE}" in bad[1] and "unreliable" in bad[1] and "--epochs" in bad[1]
    assert transfer_lines(0.1, None, 0.5, 0.3) == []


def test_a_run_folder_gives_its_own_transfer_ratio(tmp_path):
    (tmp_path / "train_summary.json").write_text(json.dumps({"chance": 0.1, "val_acc_largest": 0.9, "val_acc_smallest": 0.5}))
    trials = pd.DataFrame({"acc": [0.1, 0.34, 0.5, None], "evaluated": [True, True, True, False], "status": ["ok"] * 4})
    lines = transfer_lines_of_run(tmp_path, trials)
    assert "median evaluated architecture 0.340" in lines[0] and "transfer ratio 0.60" in lines[0] and len(lines) == 1
    assert transfer_lines_of_run(tmp_path / "nowhere", trials) == []


def test_a_supernet_checkpoint_of_the_old_layout_is_refused_in_one_line(tmp_path):
    from supernet import Supernet

    space = get_space("psvit_ext")
    run = tmp_path / "old"
    run.mkdir()
    state = {"kind": KIND, "format": 1, "space": space.name, "scale": space.proxy.to_dict(), "epoch": 1,
             "model": Supernet(space, "proxy").state_dict()}
    torch.save(state, run / "supernet.pt")
    with pytest.raises(Exception, match="has format 1; this version reads psvit-nas supernet format 2"):
        load_checkpoint(run / "supernet.pt")
    before = sorted(p.name for p in run.iterdir())
    proc = run_main("nas.train_supernet", "--resume", "--out", str(run), cwd=tmp_path)
    assert_user_error(proc, "format 1", "shares them across types", "train it again")
    assert sorted(p.name for p in run.iterdir()) == before


def test_fair_balances_psvit_depths_under_its_total_depth_rule():
    """psvit allows depth tuples by their total: fair's least-used path takes the tuple whose stage depths were used
    least, so every depth of every stage is used within 1.5x of the others (it was uniform over tuples: a stage's
    depth counts followed how many legal tuples hold each)."""
    from nas.training.sampling import choice_uses

    space = get_space("psvit")
    sampler = PathSampler(space, space.proxy, "fair", seed=0)
    uses = Counter()
    for step in range(300):
        uses.update(k for k in choice_uses(sampler.paths(0, step)[2]) if k[0] == "depth")
    for i, rule in enumerate(space.stages):
        counts = [uses[("depth", i, d)] for d in rule.depths if any(t[i] == d for t in space.depth_tuples())]
        assert min(counts) > 0 and max(counts) <= 1.5 * min(counts), (i, counts)


def teacher_trace():
    """A proxy psvit_ext supernet, its largest path (the sandwich's teacher) and that path's trace on random images."""
    from nas.measure.costs import extreme_arch
    from supernet import Supernet

    space = get_space("psvit_ext")
    net = Supernet(space, "proxy")
    teacher = extreme_arch(space, space.proxy, True)
    trace = []
    net(torch.randn(2, 3, 32, 32), teacher, trace)
    return space, net, teacher, trace


def test_alignment_trains_every_module_the_teacher_did_not_run_towards_the_teachers_outputs():
    import random

    from nas.training.supernet_trainer import alignment_loss

    space, net, teacher, trace = teacher_trace()
    assert [t[1] for t in trace].count("merge") == 3 and len(trace) == 3 + sum(teacher.depths)
    for _, _, _, x, y, _ in trace:
        assert x.requires_grad and y.requires_grad
    net.zero_grad()
    loss = alignment_loss(net, teacher, trace, "blocks", random.Random(0))
    loss.backward()
    assert loss.item() > 0
    for b, op in enumerate(teacher.merges):  # every other merge gets a gradient, the teacher's own none (its output is the target)
        for other in space.merges[b]:
            grads = [p.grad for p in net.stages[b + 1].downsample[other].parameters()]
            assert all(g is not None for g in grads) == (other != op), (b, other)
    for i, j, layer in teacher.layers():
        slot = net.stages[i].blocks[j]
        own = {id(p) for p in slot[layer.block].parameters()}
        for block, module in slot.items():
            got = [p.grad is not None for p in module.parameters() if id(p) not in own]
            if block != layer.block and got and not (block == "shared" and teacher.stages[i][j - 1].block != "mhsa"):
                assert any(got), (i, j, block)
        others = {id(p) for block, module in slot.items() if block != layer.block for p in module.parameters()}
        assert all(p.grad is None for p in slot[layer.block].parameters() if id(p) not in others), (i, j)  # inputs, targets detached


def test_stage_swap_alignment_trains_the_other_merges_and_the_teachers_blocks_behind_them():
    import random

    from nas.training.supernet_trainer import stage_swap_loss

    space, net, teacher, trace = teacher_trace()
    net.zero_grad()
    loss = stage_swap_loss(net, teacher, trace, random.Random(0))
    loss.backward()
    assert loss.item() > 0
    assert all(p.grad is None for p in net.stem.parameters())  # the stage's input is detached
    assert all(p.grad is None for p in net.stages[0].parameters())
    for b, op in enumerate(teacher.merges):
        stage = net.stages[b + 1]
        assert all(p.grad is None for p in stage.downsample[op].parameters())  # the teacher's merge gives the target only
        trained = [other for other in space.merges[b] if other != op
                   and all(p.grad is not None for p in stage.downsample[other].parameters())]
        assert len(trained) == 1, (b, trained)  # one other operator drawn per boundary
        for slot, layer in zip(stage.blocks, teacher.stages[b + 1]):
            assert any(p.grad is not None for p in slot[layer.block].parameters()), (b, layer.block)


def test_aligning_on_every_path_trains_each_other_merge_on_the_students_inputs_towards_the_teachers_operator():
    from nas.measure.costs import extreme_arch
    from nas.training.supernet_trainer import student_merge_loss

    space, net, teacher, _ = teacher_trace()
    student = extreme_arch(space, space.proxy, False)
    assert student.merges != teacher.merges
    trace = []
    net(torch.randn(2, 3, 32, 32), student, trace)
    net.zero_grad()
    loss = student_merge_loss(net, teacher, trace)
    loss.backward()
    assert loss.item() > 0
    assert all(p.grad is None for p in net.stem.parameters()) and all(p.grad is None for p in net.stages[0].parameters())
    for b, op in enumerate(teacher.merges):
        for other in space.merges[b]:
            grads = [p.grad for p in net.stages[b + 1].downsample[other].parameters()]
            assert all(g is not None for g in grads) == (other != op), (b, other)  # the teacher's operator gives the target
        for slot in net.stages[b + 1].blocks:
            assert all(p.grad is None for p in slot.parameters())
    with pytest.raises(UserError, match="--align-paths 'some' is not known; allowed: teacher, all"):
        TrainConfig(align_paths="some").check()


def test_aligning_one_type_per_layer_trains_exactly_one_other_block_type_at_each_layer():
    import random

    from nas.training.supernet_trainer import alignment_loss

    _, net, teacher, trace = teacher_trace()
    alignment_loss(net, teacher, trace, "blocks", random.Random(0), types_per_layer=1).backward()
    for i, j, layer in teacher.layers():
        slot = net.stages[i].blocks[j]
        holders = Counter(id(p) for module in slot.values() for p in module.parameters())
        shared = {key for key, n in holders.items() if n > 1}  # the norms and MLP every type at the layer holds
        trained = [block for block, module in slot.items() if block != layer.block
                   and any(p.grad is not None for p in module.parameters() if id(p) not in shared)]
        assert len(trained) == 1, (i, j, trained)


def test_aligning_on_part_of_the_batch_is_the_alignment_of_those_images():
    import random

    from supernet.blocks.attention import formed

    from nas.training.supernet_trainer import alignment_loss

    _, net, teacher, trace = teacher_trace()
    first = [(i, kind, j, x[:1], y[:1], None if attn is None else formed(attn)[:1]) for i, kind, j, x, y, attn in trace]
    part = alignment_loss(net, teacher, trace, "blocks", random.Random(0), types_per_layer=1, images=1)
    alone = alignment_loss(net, teacher, first, "blocks", random.Random(0), types_per_layer=1)
    whole = alignment_loss(net, teacher, trace, "blocks", random.Random(0), types_per_layer=1)
    assert torch.equal(part, alone) and not torch.equal(part, whole)
    with pytest.raises(UserError, match=r"--align-batch must be in \(0, 1\]"):
        TrainConfig(align_batch=1.5).check()


def test_align_types_is_checked_and_the_search_trains_the_supernet_for_the_trainers_default_epochs():
    from nas.runs import SearchSettings

    assert SearchSettings().epochs == TrainConfig().epochs == 6 and TrainConfig().align_types == 1 and TrainConfig().align_batch == 0.5
    with pytest.raises(UserError, match="--align-types must be at least 0"):
        TrainConfig(align_types=-1).check()


def test_proposal_difference_of_a_constant_shift_is_that_shift_with_no_spread(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from proposal_difference import main

    base = {"largest": 0.9, "smallest": 0.3, "median": 0.4, "near_chance": 1, "worst_swap_loss": 0.5, "ratio": 1.0}
    old = [0.1 * k for k in range(1, 9)]
    for name, values in (("new", [v + 0.05 for v in old]), ("old", old)):
        (tmp_path / f"{name}.json").write_text(json.dumps({**base, "proposals": values}))
    monkeypatch.setattr(sys, "argv", ["proposal_difference.py", str(tmp_path / "new.json"), str(tmp_path / "old.json")])
    assert main() == 0
    out = capsys.readouterr().out.splitlines()
    assert "higher on 8, lower on 0" in out[-2]
    assert out[-1] == "mean difference new - old +0.050 [90% paired bootstrap +0.050, +0.050]"
    (tmp_path / "new.json").write_text(json.dumps({**base, "proposals": old[:3]}))
    assert main() == 2
