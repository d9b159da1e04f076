import hashlib

import pytest
import torch

from conftest import TINY, assert_user_error, run_main, toy_npz
from nas.training.checkpoint import load_checkpoint
from nas.errors import RunFailed, UserError
from nas.measure.evaluate import evaluate
from supernet.calibration import path_batchnorms
from nas.training.supernet_trainer import TrainConfig, Trainer


@pytest.fixture
def data(tmp_path):
    return toy_npz(tmp_path / "toy.npz")


def _cfg(data, out, **kw):
    base = dict(space="psvit_ext", data=data, custom_scale=TINY["psvit_ext"].to_dict(), epochs=2, batch_size=16,
                out=str(out), calib_batches=2, val_fraction=0.25, warmup_epochs=1, device="cpu", merge_fit_epochs=0)
    base.update(kw)
    return TrainConfig(**base)


class Stop(Exception):
    pass


def _stop_after(epoch):
    def hook(trainer):
        if trainer.epoch == epoch:
            raise Stop

    return hook


def test_resume_continues_from_saved_epoch_with_same_optimizer_state(tmp_path, data):
    """One training epoch, then two of merge fitting, cut after the first fitting epoch: the resumed run restores both
    optimizers and ends exactly where the uninterrupted one did."""
    cfg = dict(epochs=1, merge_fit_epochs=2)
    full = Trainer(_cfg(data, tmp_path / "full", **cfg), log=lambda *_: None)
    full.run()

    interrupted = Trainer(_cfg(data, tmp_path / "cut", **cfg), log=lambda *_: None, on_epoch_end=_stop_after(2))
    with pytest.raises(Stop):
        interrupted.run()
    saved = load_checkpoint(tmp_path / "cut" / "supernet.pt")
    assert saved["epoch"] == 2 and len(saved["history"]) == 2 and "merge_fit_optimizer" in saved

    resumed = Trainer(_cfg(data, tmp_path / "cut", resume=True, **cfg), log=lambda *_: None)
    assert resumed.epoch == 2
    for ours, theirs in ((resumed.optimizer, saved["optimizer"]), (resumed.fitter.optimizer, saved["merge_fit_optimizer"])):
        opt = ours.state_dict()
        assert theirs["state"]
        for k, state in theirs["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(opt["state"][k][name]), torch.as_tensor(value))
    assert resumed.scheduler.state_dict() == saved["scheduler"]
    resumed.run()
    assert resumed.epoch == 3
    # the interrupted-and-resumed run ends exactly where the uninterrupted one did
    for (name, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["epoch"] for r in load_checkpoint(tmp_path / "cut" / "supernet.pt")["history"]] == [1, 2, 3]
    assert (tmp_path / "cut" / "train_log.csv").read_text().count("\n") == 4


def test_nan_guard_stops_and_keeps_previous_checkpoint(tmp_path, data, monkeypatch):
    out = tmp_path / "run"
    Trainer(_cfg(data, out, epochs=1), log=lambda *_: None).run()
    before = (out / "supernet.pt").read_bytes()

    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    trainer = Trainer(_cfg(data, out, epochs=3, resume=True), log=lambda *_: None)
    with pytest.raises(RunFailed) as e:
        trainer.run()
    assert "the loss became nan at epoch 2 step 1" in str(e.value)
    assert "last good checkpoint (epoch 1)" in str(e.value)
    assert (out / "supernet.pt").read_bytes() == before


def test_existing_checkpoint_is_not_overwritten(tmp_path, data):
    out = tmp_path / "run"
    Trainer(_cfg(data, out, epochs=1), log=lambda *_: None).run()
    before = (out / "supernet.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a supernet checkpoint"):
        Trainer(_cfg(data, out, epochs=1), log=lambda *_: None)
    assert (out / "supernet.pt").read_bytes() == before


def test_checkpoint_of_another_space_or_scale_is_refused(tmp_path, data):
    out = tmp_path / "run"
    Trainer(_cfg(data, out, epochs=1), log=lambda *_: None).run()
    wider = dict(TINY["psvit_ext"].to_dict(), embed_dims=(16, 32, 48, 72))
    with pytest.raises(UserError, match="is for another scale of psvit_ext .differs in embed_dims"):
        Trainer(_cfg(data, out, epochs=2, resume=True, custom_scale=wider), log=lambda *_: None)
    with pytest.raises(UserError, match="is for space 'psvit_ext', not 'psvit'"):
        Trainer(_cfg(data, out, epochs=2, resume=True, space="psvit", custom_scale=TINY["psvit"].to_dict()), log=lambda *_: None)


def test_evaluate_recalibrates_bn_without_changing_the_supernet(tmp_path, data):
    trainer = Trainer(_cfg(data, tmp_path / "run", epochs=1), log=lambda *_: None)
    trainer.run()
    net = trainer.net
    arch = next(a for a in (trainer.space.sample(s) for s in range(50)) if path_batchnorms(net, a))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    acc = evaluate(net, arch, trainer.val_loader, trainer.calib_loader, calib_batches=2)
    assert 0.0 <= acc <= 1.0
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert evaluate(net, arch, trainer.val_loader, trainer.calib_loader, calib_batches=2) == acc


def test_cli_bad_inputs(tmp_path, data):
    assert_user_error(run_main("nas.train_supernet", "--data", f"npz:{tmp_path}/missing.npz", "--out", str(tmp_path / "a")), "does not exist")
    assert_user_error(run_main("nas.train_supernet", "--space", "nope"), "unknown space 'nope'")
    assert_user_error(run_main("nas.train_supernet", "--strategy", "greedy", "--out", str(tmp_path / "b")), "allowed: sandwich, sandwich-mixed, sandwich-mixed-student, fair, uniform, stratified")
    assert_user_error(run_main("nas.train_supernet", "--merge-lr-scale", "0", "--out", str(tmp_path / "d")),
                      "--merge-lr-scale must be above 0 and at most 100 (a multiple of --lr), got 0.0")
    assert not (tmp_path / "d").exists()
    assert_user_error(run_main("nas.train_supernet", "--val-fraction", "1", "--out", str(tmp_path / "e")),
                      "--val-fraction must be in (0, 1), got 1.0")
    assert not (tmp_path / "e").exists()
    assert_user_error(run_main("nas.train_supernet", "--merge-fit-epochs", "-1", "--out", str(tmp_path / "f")),
                      "--merge-fit-epochs must be between 0 and 100,000, got -1")
    assert not (tmp_path / "f").exists()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "supernet.pt").write_bytes(b"not a checkpoint")
    assert_user_error(run_main("nas.train_supernet", "--resume", "--out", str(tmp_path / "c")), "is corrupt or not a torch checkpoint")
    assert (tmp_path / "c" / "supernet.pt").read_bytes() == b"not a checkpoint"


@pytest.mark.slow
def test_two_ray_train_workers(tmp_path, data):
    """Ray Train data parallelism: two CPU workers, the same paths each step, rank 0 writes the run."""
    from nas.training.distributed import train_with_ray

    cfg = _cfg(data, tmp_path / "run", epochs=1, strategy="uniform")
    summary = train_with_ray(cfg, num_workers=2, use_gpu=False)
    assert summary["epochs"] == 1
    ckpt = load_checkpoint(tmp_path / "run" / "supernet.pt")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # Two workers, and the digest of the paths they trained, step by step, agreed (the trainer all-gathers it and
    # stops on a mismatch); it is the digest of the paths (seed, epoch, step) gives, one per step of the epoch.
    row = ckpt["history"][0]
    single = Trainer(_cfg(data, tmp_path / "single", epochs=1, strategy="uniform"), log=lambda *_: None)
    expected = hashlib.sha256()
    for step in range(len(single.train_loader)):
        expected.update("".join(a.key() for a in single.sampler.paths(0, step)).encode())
    assert row["world"] == 2 and row["paths_sha256"] == expected.hexdigest()[:16]
    assert len({a.key() for step in range(len(single.train_loader)) for a in single.sampler.paths(0, step)}) > 1
    import ray

    ray.shutdown()


@pytest.mark.slow
def test_killed_supernet_training_resumes_to_the_same_weights(tmp_path, data):
    from conftest import kill_at_line, run_module

    args = ["nas.train_supernet", "--data", data, "--epochs", "3", "--merge-fit-epochs", "1", "--batch-size", "16", "--threads", "1",
            "--device", "cpu"]
    full = run_module(*args, "--out", str(tmp_path / "full"), cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-1500:]
    kill_at_line([*args, "--out", str(tmp_path / "cut")], "epoch 1/3: loss", tmp_path)
    assert load_checkpoint(tmp_path / "cut" / "supernet.pt")["epoch"] == 1
    resumed = run_module(*args, "--out", str(tmp_path / "cut"), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and "resumed" in resumed.stdout and "epoch 1/3:" not in resumed.stdout, resumed.stderr[-1500:]
    a, b = load_checkpoint(tmp_path / "full" / "supernet.pt"), load_checkpoint(tmp_path / "cut" / "supernet.pt")
    assert a["epoch"] == b["epoch"] == 4 and "merge_fit_optimizer" in b
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_merges_the_largest_path_does_not_run_learn_at_the_scaled_rate(tmp_path, data):
    trainer = Trainer(_cfg(data, tmp_path / "run", merge_lr_scale=3.0), log=lambda *_: None)
    largest = trainer.sampler.largest.merges
    names = {id(p): n for n, p in trainer.net.named_parameters()}
    other_merges = {n for n in names.values() if ".downsample." in n
                    and n.split(".downsample.")[1].split(".")[0] != largest[int(n.split(".")[1]) - 1]}
    groups = trainer.optimizer.param_groups
    scaled = {names[id(p)] for g in groups if "lr_scale" in g for p in g["params"]}
    assert scaled == other_merges and len({n.split(".downsample.")[1].split(".")[0] for n in scaled}) >= 2
    assert sorted(names[id(p)] for g in groups for p in g["params"]) == sorted(names.values())  # every parameter once
    for g in groups:  # weight decay as timm gives it: none on biases and norms
        assert all(p.ndim <= 1 for p in g["params"]) == (g["weight_decay"] == 0.0)
    trainer.scheduler.step_update(3)
    base = {g["lr"] for g in groups if "lr_scale" not in g}
    assert len(base) == 1 and {g["lr_scale"] for g in groups if "lr_scale" in g} == {3.0}
    assert {g["lr"] for g in groups if "lr_scale" in g} == {3.0 * base.pop()}


def test_a_checkpoint_with_other_optimizer_groups_is_not_resumed(tmp_path, data):
    Trainer(_cfg(data, tmp_path / "run", epochs=1, merge_lr_scale=4.0), log=lambda *_: None).run()
    before = (tmp_path / "run" / "supernet.pt").read_bytes()
    with pytest.raises(UserError, match=r"scales per parameter group are \[1.0, 1.0, 4.0, 4.0\], this run's \[1.0, 1.0\] "
                                        r"\(it was trained with another --merge-lr-scale\); resume with that one, or start a new run"):
        Trainer(_cfg(data, tmp_path / "run", epochs=2, resume=True), log=lambda *_: None)
    with pytest.raises(UserError, match=r"are \[1.0, 1.0, 4.0, 4.0\], this run's \[1.0, 1.0, 3.0, 3.0\]"):
        Trainer(_cfg(data, tmp_path / "run", epochs=2, resume=True, merge_lr_scale=3.0), log=lambda *_: None)
    assert (tmp_path / "run" / "supernet.pt").read_bytes() == before
    resumed = Trainer(_cfg(data, tmp_path / "run", epochs=2, resume=True, merge_lr_scale=4.0), log=lambda *_: None)
    assert resumed.epoch == 1 and len(resumed.optimizer.param_groups) == 4


def test_merge_fitting_trains_only_the_merges_the_largest_path_does_not_run(tmp_path, data):
    logs = []
    trainer = Trainer(_cfg(data, tmp_path / "run", epochs=1, merge_fit_epochs=1), log=logs.append)
    assert trainer.planned_epochs == 2
    largest = trainer.sampler.largest.merges
    fitted = {n for n, _ in trainer.net.named_parameters() if ".downsample." in n
              and n.split(".downsample.")[1].split(".")[0] != largest[int(n.split(".")[1]) - 1]}
    assert len({n.split(".downsample.")[1].split(".")[0] for n in fitted}) == 2  # conv and pool; spm is the largest's
    trainer.run_epoch()
    before = {n: p.detach().clone() for n, p in trainer.net.named_parameters()}
    trainer.run_epoch()
    changed = {n for n, p in trainer.net.named_parameters() if not torch.equal(p, before[n])}
    assert changed == fitted
    assert logs[-1].startswith("merge fit 1/1: loss ")
    summary = trainer.finish()
    assert (summary["epochs"], summary["merge_fit_epochs"]) == (1, 1)


def test_merge_fitting_paths():
    from nas.measure.costs import extreme_arch
    from nas.training.merge_fitting import RANDOM_PATHS, fit_paths
    from search_spaces import get_space

    space, scale = get_space("psvit_ext"), TINY["psvit_ext"]
    largest, smallest = extreme_arch(space, scale, True), extreme_arch(space, scale, False)
    assert set(largest.merges) == {"spm"} and set(smallest.merges) == {"pool"}
    even = fit_paths(space, largest, smallest, seed=0, epoch=3, step=4)
    # the smallest path, and both extremes with each operator the largest does not run in every boundary
    assert sorted((a.stages == largest.stages, a.merges) for a in even) == [
        (False, ("conv",) * 3), (False, ("pool",) * 3), (True, ("conv",) * 3), (True, ("pool",) * 3)]
    assert all(a.stages in (largest.stages, smallest.stages) for a in even)
    odd = fit_paths(space, largest, smallest, seed=0, epoch=3, step=5)
    assert len(odd) == RANDOM_PATHS and [a.key() for a in odd] == [a.key() for a in fit_paths(space, largest, smallest, 0, 3, 5)]
    assert [a.key() for a in odd] != [a.key() for a in fit_paths(space, largest, smallest, 0, 3, 7)]
    for a in odd:
        space.validate(a)


def test_a_space_without_merge_choices_has_no_fitting_epochs(tmp_path, data):
    trainer = Trainer(_cfg(data, tmp_path / "run", space="psvit", custom_scale=TINY["psvit"].to_dict(), epochs=1,
                           merge_fit_epochs=2), log=lambda *_: None)
    assert trainer.fitter.params == [] and trainer.planned_epochs == 1


def test_a_run_whose_merges_were_fitted_is_not_resumed_with_more_epochs(tmp_path, data):
    Trainer(_cfg(data, tmp_path / "run", epochs=1, merge_fit_epochs=1), log=lambda *_: None).run()
    before = (tmp_path / "run" / "supernet.pt").read_bytes()
    with pytest.raises(UserError, match=r"its merges were fitted after 1 training epochs, so --epochs must stay 1 \(got 2\); "
                                        r"start a new run for more epochs"):
        Trainer(_cfg(data, tmp_path / "run", epochs=2, merge_fit_epochs=1, resume=True), log=lambda *_: None)
    assert (tmp_path / "run" / "supernet.pt").read_bytes() == before
    more = Trainer(_cfg(data, tmp_path / "run", epochs=1, merge_fit_epochs=2, resume=True), log=lambda *_: None)
    assert (more.epoch, more.planned_epochs) == (2, 3)  # more fitting is allowed: it continues where it stopped
