"""nas.retrain on the tiny space (tests/tiny_space.py) and a toy data set: metrics, resume, --init
supernet, export, --top K, and every bad input."""
import itertools
import json
from dataclasses import replace
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import tiny_space  # noqa: F401  (registers tiny_ext)
from conftest import ROOT, assert_user_error, run_module, toy_npz
from nas.training.checkpoint import RETRAIN_KIND, load_checkpoint, save_checkpoint
from nas.errors import RunFailed
from nas.measure.evaluate import calibration_loader
from nas.measure.costs import arch_costs
from nas import runs
from nas.retrain import main
from nas.runs import SearchSettings
from nas.training.recipes import RetrainConfig
from nas.training.retrainer import Retrainer
from search_spaces import Arch, Scale, file_sha256, get_space
from supernet import Supernet

SPACE_FILE = str(ROOT / "tests" / "tiny_space.py")
FAST = ["--epochs", "2", "--batch-size", "16", "--no-latency"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_npz(tmp_path_factory.mktemp("data") / "toy.npz", n_train=120, n_test=30)


@pytest.fixture(scope="module")
def run(tmp_path_factory, toy):
    """A search run folder as nas.search leaves it: config.json, supernet.pt, best.json, pareto.csv."""
    run = tmp_path_factory.mktemp("run")
    space = get_space("tiny_ext")
    scale = space.proxy
    torch.manual_seed(1)
    net = Supernet(space, scale)
    save_checkpoint({"space": space.name, "scale": scale.to_dict(), "epoch": 1, "model": net.state_dict()}, run / "supernet.pt")
    settings = SearchSettings(space=space.name, data=toy, seed=3, space_file=SPACE_FILE, space_file_sha256=file_sha256(SPACE_FILE),
                              run_dir=str(run))
    runs.write_config(settings, run, {"supernet": str(run / "supernet.pt"), "proxy_scale": scale.to_dict()})
    archs = [space.sample(seed) for seed in range(4)]
    accs = [0.41, 0.62, 0.55, 0.30]
    rows = [{"trial": 10 + k, "acc": acc, "macs": arch_costs(a, space.target).macs, "params": 0, "arch": a.to_json()}
            for k, (a, acc) in enumerate(zip(archs, accs))]
    pd.DataFrame(rows).to_csv(run / "pareto.csv", index=False)
    best = {"space": space.name, "arch": archs[1].to_dict(), "accuracy": 0.62, "trial": 11, "run": str(run)}
    (run / "best.json").write_text(json.dumps(best))
    return SimpleNamespace(path=run, space=space, scale=scale, archs=archs, accs=accs, best=archs[1], net=net)


def cli(capsys, *args):
    """nas.retrain in-process; the tiny space's file is given as a user must for a run of a custom space."""
    args = [str(a) for a in args]
    code = main(args if "--space-file" in args else [*args, "--space-file", SPACE_FILE])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def _cfg(run, out, **kw):
    base = dict(space="tiny_ext", arch=run.best.to_dict(), data=json.loads((run.path / "config.json").read_text())["settings"]["data"],
                custom_scale=run.scale.to_dict(), epochs=2, batch_size=16, warmup_epochs=1, out=str(out), device="cpu",
                latency=False, space_file=SPACE_FILE)
    base.update(kw)
    return RetrainConfig(**base)


class Stop(Exception):
    pass


# ------------------------------------------------------------------ what a retrain writes
def test_metrics_json_from_a_run_best_json(tmp_path, capsys, run):
    out = tmp_path / "rt"
    proc = cli(capsys, run.path / "best.json", "--epochs", "2", "--batch-size", "16", "--out", out)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    arch = run.best
    assert 0.0 <= m["val_acc"] <= 1.0 and 0.0 <= m["test_acc"] <= 1.0
    assert m["inherited_val_acc"] == 0.62 and m["chance"] == pytest.approx(1 / 3)
    assert m["epochs"] == 2 and m["init"] == "scratch" and m["weights"] == "model"
    # the run's settings are the defaults: its data, its seed (the split), its supernet scale
    assert m["seed"] == 3 and m["data"]["spec"].startswith("npz:") and m["data"]["val"] == 12 and Scale.from_dict(m["scale"]) == run.scale
    assert (m["macs"], m["params"]) == tuple(vars(arch_costs(arch, run.scale)).values())
    assert (m["target_macs"], m["target_params"]) == tuple(vars(arch_costs(arch, run.space.target)).values())
    assert m["latency_ms"] > 0 and m["latency"]["img_size"] == 224 and m["latency"]["device"] == "cpu"
    assert Arch.from_dict(m["arch"]) == arch and Arch.load(out / "arch.json") == arch
    assert m["recipe"]["name"] == "quick" and m["recipe"]["epochs"] == 2 and m["recipe"]["smoothing"] == 0.1
    assert m["versions"]["torch"] == torch.__version__ and m["wall_time_s"] > 0
    log = pd.read_csv(out / "train_log.csv")
    assert list(log["epoch"]) == [1, 2] and log["val_acc"].iloc[-1] == m["val_acc"]
    ckpt = load_checkpoint(out / "checkpoint.pt", kind=RETRAIN_KIND)
    assert ckpt["epoch"] == 2 and set(ckpt) >= {"model", "ema", "optimizer", "scheduler", "rng", "config", "arch"}
    assert "epoch 2/2: loss" in proc.stdout and "validation accuracy" in proc.stdout and "test accuracy" in proc.stdout


def test_resume_continues_from_saved_epoch(tmp_path, run):
    """Killed after epoch 1 and resumed: the same weights, EMA and optimizer state as an uninterrupted run
    (Mixup draws from numpy, drop path from torch: both generators are restored)."""
    recipe = dict(mixup=0.4, cutmix=0.4, drop_path=0.1, model_ema=True, ema_decay=0.9)
    full = Retrainer(_cfg(run, tmp_path / "full", **recipe), log=lambda *_: None)
    full.run()

    def stop_after_first(trainer):
        if trainer.epoch == 1:
            raise Stop

    cut = Retrainer(_cfg(run, tmp_path / "cut", **recipe), log=lambda *_: None, on_epoch_end=stop_after_first)
    with pytest.raises(Stop):
        cut.run()
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt", kind=RETRAIN_KIND)["epoch"] == 1
    assert not (tmp_path / "cut" / "metrics.json").exists()

    resumed = Retrainer(_cfg(run, tmp_path / "cut", resume=True, **recipe), log=lambda *_: None)
    assert resumed.epoch == 1
    resumed.run()
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for (name, a), b in zip(full.ema.module.state_dict().items(), resumed.ema.module.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["val_acc"] == \
        json.loads((tmp_path / "full" / "metrics.json").read_text())["val_acc"]


def test_init_supernet_loads_exactly_the_extracted_weights(tmp_path, run):
    """--init supernet: the weights Supernet.extract gives with BatchNorm recalibrated on the batches the search's
    evaluation uses (the same data, seed and number of batches)."""
    cfg = _cfg(run, tmp_path / "rt", init="supernet", supernet=str(run.path / "supernet.pt"))
    trainer = Retrainer(cfg, log=lambda *_: None)
    calib = itertools.islice(calibration_loader(trainer.bundle), cfg.calib_batches)
    extracted = run.net.extract(run.best, calib=calib).eval()
    model = trainer.model.eval()
    expected = extracted.state_dict()
    assert list(model.state_dict()) == list(expected)
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), extracted(x))
        scratch = Retrainer(_cfg(run, tmp_path / "scratch"), log=lambda *_: None).model.eval()
        assert not torch.equal(scratch(x), extracted(x))


def test_export_onnx_and_torchscript_match_torch(tmp_path, capsys, run):
    import onnxruntime as ort

    out = tmp_path / "rt"
    proc = cli(capsys, run.path / "best.json", *FAST, "--epochs", "1", "--export", "onnx", "--export", "ts", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"exported onnx: {out / 'model.onnx'}" in proc.stdout and f"exported torchscript: {out / 'model.ts'}" in proc.stdout
    model = Retrainer(_cfg(run, out, resume=True), log=lambda *_: None).model.eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert onnx_out.shape == (5, 3) and (onnx_out - expected).abs().max().item() <= 1e-4
    with torch.no_grad():
        assert (torch.jit.load(str(out / "model.ts"))(x) - expected).abs().max().item() <= 1e-4
    exports = json.loads((out / "metrics.json").read_text())["exports"]
    assert [e["format"] for e in exports] == ["onnx", "torchscript"] and all(e["max_abs_diff"] <= 1e-4 for e in exports)


def test_export_that_does_not_match_is_refused_and_not_written(tmp_path, run, monkeypatch):
    from nas.measure import export

    write, execute = export._WRITERS["torchscript"]
    monkeypatch.setitem(export._WRITERS, "torchscript", (write, lambda path, x: execute(path, x) + 1e-3))
    model = Retrainer(_cfg(run, tmp_path / "rt"), log=lambda *_: None).model
    with pytest.raises(RunFailed, match=r"torchscript export does not match the torch model: max abs difference 0.001 > 0.0001"):
        export.export_model(model, "torchscript", tmp_path, 16)
    assert list(tmp_path.glob("*model.ts*")) == []


def test_top_k_from_pareto_csv_picks_the_most_accurate(tmp_path, capsys, run):
    out = tmp_path / "top"
    proc = cli(capsys, run.path / "pareto.csv", "--top", "2", *FAST, "--epochs", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["selected.json", "selection.csv", "trial-11", "trial-12"]  # acc 0.62, 0.55
    metrics = {}
    for trial, k in (("trial-11", 1), ("trial-12", 2)):
        metrics[trial] = m = json.loads((out / trial / "metrics.json").read_text())
        assert Arch.from_dict(m["arch"]) == run.archs[k] and m["inherited_val_acc"] == run.accs[k] and m["source"]["trial"] == 10 + k
    # the two choose among themselves on validation accuracy (ties: the higher inherited accuracy, trial-11)
    winner = max(metrics, key=lambda t: (metrics[t]["val_acc"], metrics[t]["inherited_val_acc"]))
    table = pd.read_csv(out / "selection.csv")
    assert table["label"].tolist() == sorted(metrics, key=lambda t: (-metrics[t]["val_acc"], -metrics[t]["inherited_val_acc"]))
    assert table["val_acc"].tolist() == sorted((m["val_acc"] for m in metrics.values()), reverse=True)
    selected = json.loads((out / "selected.json").read_text())
    assert Arch.from_dict(selected["arch"]) == Arch.from_dict(metrics[winner]["arch"])
    assert selected["accuracy"] == metrics[winner]["val_acc"] and selected["inherited_acc"] == metrics[winner]["inherited_val_acc"]
    assert selected["trial"] == metrics[winner]["source"]["trial"] and selected["run"] == str(run.path)
    assert f"selected {winner}" in proc.stdout and selected["split"].startswith("validation (trained alone 1 epochs, best of the top 2")
    # selected.json is a best.json: nas.retrain takes it back, on the run's data and split, with its inherited accuracy
    again = cli(capsys, out / "selected.json", *FAST, "--epochs", "1", "--out", tmp_path / "final")
    assert again.returncode == 0, again.stderr
    final = json.loads((tmp_path / "final" / "metrics.json").read_text())
    assert final["arch"] == metrics[winner]["arch"] and final["inherited_val_acc"] == metrics[winner]["inherited_val_acc"]
    assert final["source"]["run"] == str(run.path) and final["val_acc"] == metrics[winner]["val_acc"]


def test_top_k_skips_repeated_architectures(tmp_path, run):
    from nas.retrain import candidates_from_table

    table = pd.read_csv(run.path / "pareto.csv")
    repeated = pd.concat([table, table.iloc[[1]].assign(trial=99, acc=0.9)])
    repeated.to_csv(tmp_path / "trials.csv", index=False)
    found = candidates_from_table(tmp_path / "trials.csv", 2)
    assert [c.trial for c in found] == [99, 12] and found[0].arch == run.archs[1]


def test_resume_and_out_folder_rules(tmp_path, capsys, run):
    out = tmp_path / "rt"
    assert cli(capsys, run.path / "best.json", *FAST, "--epochs", "1", "--out", out).returncode == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert_user_error(cli(capsys, run.path / "best.json", *FAST, "--out", out), "already holds a retrain checkpoint", "--resume")
    assert (out / "checkpoint.pt").read_bytes() == before
    proc = cli(capsys, run.path / "best.json", *FAST, "--out", out, "--resume")
    assert proc.returncode == 0 and "resumed" in proc.stdout and "epoch 2/2" in proc.stdout and "epoch 1/2:" not in proc.stdout
    other = run.archs[0].to_dict()
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert_user_error(cli(capsys, tmp_path / "other.json", *FAST, "--out", out, "--resume", "--data", json.loads(
        (run.path / "config.json").read_text())["settings"]["data"], "--space-file", SPACE_FILE), "trains another architecture")


@pytest.fixture(scope="module")
def local_ray():
    yield
    import ray

    ray.shutdown()


@pytest.mark.slow
def test_parallel_top_k_as_ray_tasks(tmp_path, capsys, run, local_ray):
    out = tmp_path / "par"
    proc = cli(capsys, run.path / "pareto.csv", "--top", "2", "--parallel", *FAST, "--epochs", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "in parallel on Ray" in proc.stdout
    for trial, k in (("trial-11", 1), ("trial-12", 2)):
        m = json.loads((out / trial / "metrics.json").read_text())
        assert Arch.from_dict(m["arch"]) == run.archs[k] and m["epochs"] == 1 and 0 <= m["test_acc"] <= 1


@pytest.mark.slow
def test_two_ray_train_workers(tmp_path, capsys, run, local_ray):
    """Data parallel on two CPU workers: each takes half of every batch (Mixup pairs within its half)."""
    out = tmp_path / "rt"
    proc = cli(capsys, run.path / "best.json", *FAST, "--num-workers", "2", "--mixup", "0.2", "--out", out)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["epochs"] == 2 and 0 <= m["val_acc"] <= 1
    assert load_checkpoint(out / "checkpoint.pt", kind=RETRAIN_KIND)["epoch"] == 2


def test_recipe_presets_and_overrides():
    from nas.training.recipes import resolve_recipe

    deit = resolve_recipe("deit", {"batch_size": 256})
    assert deit["lr"] == pytest.approx(5e-4 * 256 / 512) and deit["mixup"] == 0.8 and deit["aa"] == "rand-m9-mstd0.5-inc1"
    assert deit["warmup_epochs"] == 5 and deit["ema_decay"] == 0.99996 and deit["epochs"] == 300
    assert resolve_recipe("deit", {"lr": 1e-3})["lr"] == 1e-3
    quick = resolve_recipe("quick", {})
    assert quick["epochs"] == RetrainConfig.epochs and quick["mixup"] == 0 and quick["aa"] is None
    assert resolve_recipe("quick", {"epochs": 2})["warmup_epochs"] == 0
    assert resolve_recipe("quick", {"epochs": 2, "warmup_epochs": 1})["warmup_epochs"] == 1


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written
def test_missing_arch_file_exits_2_without_traceback(tmp_path):
    proc = run_module("nas.retrain", str(tmp_path / "nope.json"), "--out", str(tmp_path / "rt"))
    assert_user_error(proc, "nope.json", "does not exist")
    assert not (tmp_path / "rt").exists()


@pytest.mark.parametrize("case", ["not_json", "invalid_arch", "no_columns", "top_too_large", "top_on_json", "bad_export", "bad_recipe"])
def test_bad_inputs(tmp_path, capsys, run, case):
    bad = dict(run.best.to_dict())
    bad["stages"] = [[dict(layer, strip_width=4) if layer["block"] == "strip" else layer for layer in stage] for stage in bad["stages"]]
    if not any(l["block"] == "strip" for s in bad["stages"] for l in s):
        bad["stages"][0][0] = {"block": "strip", "strip_width": 4}
    files = {
        "not_json": ("a.json", "{not json"),
        "invalid_arch": ("bad.json", json.dumps({"arch": bad, "accuracy": 0.5})),
        "no_columns": ("pareto.csv", "trial,macs\n1,5\n"),
    }
    args, fragments = {
        "not_json": (["a.json"], ["a.json: not valid JSON"]),
        "invalid_arch": (["bad.json", "--space-file", SPACE_FILE], ["bad.json", "strip_width: 4 is not allowed; allowed: 1, 3, 5, 7"]),
        "no_columns": (["pareto.csv"], ["missing column(s) arch, acc"]),
        "top_too_large": ([run.path / "pareto.csv", "--top", "5"], ["--top 5", "has 4 evaluated feasible architecture(s)"]),
        "top_on_json": ([run.path / "best.json", "--top", "2"], ["--top 2", "holds one architecture"]),
        "bad_export": ([run.path / "best.json", "--export", "onnx,tflite"], ["--export 'tflite'", "allowed: onnx, torchscript"]),
        "bad_recipe": ([run.path / "best.json", "--recipe", "fast"], ["--recipe 'fast'", "allowed: quick, deit"]),
    }[case]
    if case in files:
        name, text = files[case]
        (tmp_path / name).write_text(text)
    args = [tmp_path / a if isinstance(a, str) and a in {"a.json", "bad.json", "pareto.csv"} else a for a in args]
    assert_user_error(cli(capsys, *args, "--out", tmp_path / "rt"), *fragments)
    assert not (tmp_path / "rt").exists()


def test_init_supernet_with_an_incompatible_checkpoint(tmp_path, capsys, run):
    wider = replace(run.scale, embed_dims=(16, 32, 48, 72))
    save_checkpoint({"space": "tiny_ext", "scale": wider.to_dict(), "epoch": 1, "model": {}}, tmp_path / "wider.pt")
    save_checkpoint({"space": "psvit_ext", "scale": run.scale.to_dict(), "epoch": 1, "model": {}}, tmp_path / "other.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    best = run.path / "best.json"
    cases = {
        "wider.pt": ["--init supernet", "is for another scale of tiny_ext", "embed_dims=(16, 32, 48, 72)", "this run's: embed_dims=(16, 32, 48, 64)"],
        "other.pt": ["--init supernet", "is for space 'psvit_ext', not 'tiny_ext'"],
        "corrupt.pt": ["corrupt.pt", "is corrupt or not a torch checkpoint"],
    }
    for name, fragments in cases.items():
        proc = cli(capsys, best, *FAST, "--init", "supernet", "--supernet", tmp_path / name, "--out", tmp_path / "rt")
        assert_user_error(proc, *fragments)
    assert_user_error(cli(capsys, best, *FAST, "--init", "supernet", "--supernet", tmp_path / "missing.pt", "--out", tmp_path / "rt"),
                      "missing.pt: file does not exist")
    (tmp_path / "lone.json").write_text(run.best.to_json())
    assert_user_error(cli(capsys, tmp_path / "lone.json", "--space-file", SPACE_FILE, "--init", "supernet", "--out", tmp_path / "rt"),
                      "no supernet checkpoint found", "--supernet PATH")
    assert not (tmp_path / "rt").exists()


@pytest.mark.slow
def test_killed_retrain_resumes_to_the_same_weights(tmp_path, run):
    from conftest import kill_at_line, run_module

    arch = tmp_path / "arch.json"
    run.best.save(arch)
    data = runs.read_settings(run.path, "run").data
    args = ["nas.retrain", str(arch), "--space-file", SPACE_FILE, "--data", data, "--epochs", "3", "--batch-size", "16", "--no-latency",
            "--threads", "1", "--device", "cpu"]
    full = run_module(*args, "--out", str(tmp_path / "full"), cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-1500:]
    kill_at_line([*args, "--out", str(tmp_path / "cut")], "epoch 1/3: loss", tmp_path)
    resumed = run_module(*args, "--out", str(tmp_path / "cut"), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and "resumed" in resumed.stdout and "epoch 1/3:" not in resumed.stdout, resumed.stderr[-1500:]
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt", kind=RETRAIN_KIND) for name in ("full", "cut"))
    assert a["epoch"] == b["epoch"] == 3 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((tmp_path / "full" / "metrics.json").read_text())["val_acc"] == \
        json.loads((tmp_path / "cut" / "metrics.json").read_text())["val_acc"]
