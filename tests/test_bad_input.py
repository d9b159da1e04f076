"""The bad-input corpus: every command, run in-process as `python -m` would run it, answers a user's mistake
with exit status 2 and exactly one line on stderr (no traceback), and leaves results/ byte-identical.

Each case names the command, its arguments (with {placeholders} for the files made below) and a fragment
of the line it must print. Malicious files (pickles that would run code, a space file that would create
a file) must be refused without their code ever running.
"""
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_user_error, run_main, toy_npz

PWNED = "pwned-marker"


class _Exploit:
    """Unpickling this runs code: it writes the marker file named at construction."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _arch():
    from search_spaces import get_space

    return get_space("psvit_ext").sample(0).to_dict()


def _npz(path: Path, **override) -> str:
    arrays = {"x_train": np.zeros((40, 16, 16, 3), np.uint8), "y_train": np.arange(40) % 3,
              "x_test": np.zeros((8, 16, 16, 3), np.uint8), "y_test": np.arange(8) % 3}
    arrays.update(override)
    np.savez(path, **arrays)
    return f"npz:{path}"


def _image_folder(root: Path, classes: dict[str, int], corrupt: str | None = None) -> str:
    """An ImageFolder tree (train/ and val/) of 8x8 PNGs; `corrupt`: a train/ file holding bytes that are no image."""
    from PIL import Image

    for split, share in (("train", 1.0), ("val", 0.1)):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for k in range(max(1, int(count * share))):
                Image.new("RGB", (8, 8), (k * 5 % 256, 0, 0)).save(root / split / name / f"{k}.png")
    if corrupt:
        (root / "train" / corrupt).write_bytes(b"\x89PNG not really")
    return f"folder:{root}"


def _run(folder: Path, settings: dict | None = None, config=None) -> str:
    folder.mkdir(parents=True)
    if config is None:
        config = {"kind": "psvit-nas search", "settings": {"space": "psvit_ext", "flops": 4.5e9, "objectives": ["acc", "flops"],
                                                           "trials": 2, "epochs": 1, "data": "digits", "run_dir": str(folder),
                                                           **(settings or {})}}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    t = tmp_path_factory.mktemp("inputs")
    marker = t / PWNED
    f = {"marker": str(marker), "t": str(t)}
    f["toy"] = toy_npz(t / "toy.npz")
    from search_spaces import get_space

    f["nb201_arch"] = str(t / "nb201.json")
    Path(f["nb201_arch"]).write_text(get_space("nb201").sample(0).to_json())
    f["empty_npz"] = _npz(t / "empty.npz", x_train=np.zeros((0, 16, 16, 3), np.uint8), y_train=np.zeros(0, int))
    f["neg_npz"] = _npz(t / "neg.npz", y_train=-np.ones(40, int))
    f["obj_npz"] = _npz(t / "obj.npz", y_train=np.array([{"a": 1}] * 40, dtype=object))
    f["ch5_npz"] = _npz(t / "ch5.npz", x_train=np.zeros((40, 16, 16, 5), np.uint8))
    f["float_labels_npz"] = _npz(t / "flt.npz", y_train=np.zeros(40, np.float32))
    f["huge_label_npz"] = _npz(t / "huge.npz", y_train=np.where(np.arange(40) == 7, 2**40, np.arange(40) % 3))
    f["one_class_folder"] = _image_folder(t / "one_class", {"cat": 40})
    f["corrupt_folder"] = _image_folder(t / "corrupt", {"cat": 40, "dog": 40}, corrupt="dog/broken.png")
    (t / "dangling").symlink_to(t / "nowhere")
    f["dangling"] = str(t / "dangling")
    f["long_out"] = str(t / ("r" * 300))
    f["odd_out"] = str(t / "run\u202egpj.\U0001F600")
    (t / "imgs" / "train" / "cat").mkdir(parents=True)
    (t / "imgs" / "train" / "dog").mkdir(parents=True)
    (t / "imgs" / "val" / "cat").mkdir(parents=True)
    f["no_images"] = f"folder:{t / 'imgs'}"
    (t / "a_file").write_text("not a folder")
    f["a_file"] = str(t / "a_file")
    (t / "syntax.py").write_text("def broken(:\n")
    f["syntax_py"] = str(t / "syntax.py")
    (t / "pwn.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    f["pwn_py"] = str(t / "pwn.py")
    (t / "other.py").write_text("x = 1\n")
    f["other_py"] = str(t / "other.py")
    arch = _arch()
    for name, data in {"arch": arch, "extra_field": {**arch, "comment": "hi"}, "version_true": {**arch, "version": True},
                       "unknown_space": {**arch, "space": "no_such_space"}, "stages_str": {**arch, "stages": "many"},
                       "deep_arch": None}.items():
        path = t / f"{name}.json"
        path.write_text("[" * 100000 + "]" * 100000 if data is None else json.dumps(data))
        f[name] = str(path)
    (t / "not_json.json").write_text("{not json")
    f["not_json"] = str(t / "not_json.json")
    (t / "list.json").write_text("[1, 2]")
    f["list_json"] = str(t / "list.json")
    # runs whose config.json is wrong or hostile
    f["run_list"] = _run(t / "run_list", config=[1, 2])
    f["run_nosettings"] = _run(t / "run_nosettings", config={"kind": "psvit-nas search"})
    f["run_trials_str"] = _run(t / "run_trials_str", {"trials": "many"})
    f["run_flops_str"] = _run(t / "run_flops_str", {"flops": "4.5G"})
    f["run_unknown_setting"] = _run(t / "run_unknown_setting", {"evil": "x"})
    f["run_pwn"] = _run(t / "run_pwn", {"space_file": f["pwn_py"], "space_file_sha256": hashlib.sha256(b"x").hexdigest()})
    f["run_ok"] = _run(t / "run_ok")
    (t / "best_pwn.json").write_text(json.dumps({"space": "psvit_ext", "arch": arch, "accuracy": 0.5, "run": f["run_pwn"]}))
    f["best_pwn"] = str(t / "best_pwn.json")
    # trials tables a report must refuse
    row = {"trial": 0, "status": "ok", "feasible": True, "evaluated": True, "acc": 0.5, "macs": 1e9, "params": 1e6, "arch": json.dumps(arch)}
    for name, change in {"inf_acc": {"acc": float("inf")}, "neg_macs": {"macs": -1.0}, "acc_above_1": {"acc": 3.0}, "nan_trial": {"trial": None}}.items():
        folder = t / f"report_{name}"
        folder.mkdir()
        import pandas as pd
        pd.DataFrame([{**row, **change}, {**row, "trial": 1}]).to_csv(folder / "trials.csv", index=False)
        f[f"report_{name}"] = str(folder)
    folder = t / "report_flops_str"
    folder.mkdir()
    import pandas as pd
    pd.DataFrame([row]).to_csv(folder / "trials.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"kind": "psvit-nas search", "settings": {"space": "psvit_ext", "flops": "4.5G",
                                                                                            "objectives": ["acc", "flops"], "trials": 1}}))
    f["report_flops_str"] = str(folder)
    (t / "empty_dir").mkdir()
    f["empty_dir"] = str(t / "empty_dir")
    # checkpoints: three pickles that would run code, and a torch state dict that fits no supernet
    torch.save({"model": _Exploit(str(marker))}, t / "zip.pt")
    torch.save({"model": _Exploit(str(marker))}, t / "legacy.pt", _use_new_zipfile_serialization=False)
    (t / "raw.pt").write_bytes(pickle.dumps({"model": _Exploit(str(marker))}))
    from nas.training.checkpoint import save_checkpoint
    from search_spaces import get_space

    save_checkpoint({"space": "psvit_ext", "scale": get_space("psvit_ext").proxy.to_dict(), "model": {"nonsense.weight": torch.zeros(3)},
                     "epoch": 1, "config": {}}, t / "wrong_keys.pt")
    for name in ("zip", "legacy", "raw", "wrong_keys"):
        f[f"{name}_pt"] = str(t / f"{name}.pt")
    for name in ("zip", "legacy", "raw"):  # a run folder whose supernet checkpoint is an exploit, for train_supernet --resume
        (t / f"resume_{name}").mkdir()
        (t / f"resume_{name}" / "supernet.pt").write_bytes((t / f"{name}.pt").read_bytes())
        (t / f"retrain_{name}").mkdir()
        (t / f"retrain_{name}" / "checkpoint.pt").write_bytes((t / f"{name}.pt").read_bytes())
        f[f"resume_{name}"], f[f"retrain_{name}"] = str(t / f"resume_{name}"), str(t / f"retrain_{name}")
    return f


S = ("nas.search", "--space", "psvit_ext", "--flops", "4.5G")  # a search that would otherwise start
CASES = [
    # nas.search: limits, names, numbers
    ("search-flops-unit", ("nas.search", "--space", "psvit_ext", "--flops", "4.5X"), "--flops: '4.5X' is not a number"),
    ("search-flops-negative", ("nas.search", "--space", "psvit_ext", "--flops", "-1G"), "--flops: '-1G'"),
    ("search-flops-empty", ("nas.search", "--space", "psvit_ext", "--flops", ""), "--flops: ''"),
    ("search-params-unit", ("nas.search", "--space", "psvit_ext", "--params", "22Q"), "--params: '22Q'"),
    ("search-latency-word", (*S, "--latency", "fast"), "--latency: 'fast' is not a latency"),
    ("search-latency-zero", (*S, "--latency", "0ms"), "must be a positive latency"),
    ("search-unknown-space", ("nas.search", "--space", "nope", "--flops", "4.5G"), "unknown space 'nope'"),
    ("search-sampler", (*S, "--sampler", "nope"), "--sampler 'nope' is not known"),
    ("search-trials-0", (*S, "--trials", "0"), "--trials must be at least 1"),
    ("search-trials-word", (*S, "--trials", "many"), "invalid int value: 'many'"),
    ("search-unreachable-flops", ("nas.search", "--space", "psvit_ext", "--flops", "0.001G"), "no architecture of psvit_ext fits"),
    ("search-unreachable-params", ("nas.search", "--space", "psvit_ext", "--params", "1M"), "M params"),
    ("search-objectives-order", (*S, "--objectives", "flops,acc"), "--objectives 'flops,acc'"),
    ("search-objectives-unknown", (*S, "--objectives", "acc,speed"), "--objectives 'acc,speed'"),
    ("search-epochs-0", (*S, "--epochs", "0"), "--epochs must be at least 1"),
    ("search-strategy", (*S, "--strategy", "greedy"), "--strategy 'greedy' is not known"),
    ("search-concurrency", (*S, "--concurrency", "-1"), "--concurrency must be at least 0"),
    ("search-cpus-per-trial", (*S, "--cpus-per-trial", "0"), "--cpus-per-trial must be positive"),
    ("search-gpus-without-gpu", (*S, "--gpus-per-trial", "1"), "no GPU is visible here"),
    ("search-scale", (*S, "--scale", "huge"), "--scale 'huge' is not known"),
    ("search-device", (*S, "--latency", "8ms", "--device", "tpu"), "--device 'tpu'"),
    ("search-latency-batch", (*S, "--latency", "8ms", "--latency-batch", "0"), "--latency-batch must be at least 1"),
    ("search-unknown-flag", (*S, "--flop", "4G"), "unrecognized arguments"),
    ("search-address", (*S, "--address", "127.0.0.1:1"), "--address 127.0.0.1:1: cannot reach a Ray cluster"),
    ("search-address-form", (*S, "--address", "nowhere"), "expected auto, HOST:PORT"),
    # nas.search: data and files, checked before a run folder exists
    ("search-npz-missing", (*S, "--data", "npz:/nonexistent/x.npz"), "file does not exist"),
    ("search-npz-empty", (*S, "--data", "{empty_npz}"), "x_train holds no images"),
    ("search-npz-negative-label", (*S, "--data", "{neg_npz}"), "holds the label -1"),
    ("search-npz-object-array", (*S, "--data", "{obj_npz}"), "cannot read its arrays"),
    ("search-npz-5-channels", (*S, "--data", "{ch5_npz}"), "with C 1 or 3"),
    ("search-npz-float-labels", (*S, "--data", "{float_labels_npz}"), "integer class labels"),
    ("search-folder-no-images", (*S, "--data", "{no_images}"), "Found 0 images"),
    ("search-data-spec", (*S, "--data", "ftp://x"), "--data 'ftp://x': not understood"),
    ("search-out-is-a-file", (*S, "--out", "{a_file}"), "is a file"),
    ("search-select-0", (*S, "--select", "0"), "--select must be at least 1"),
    ("search-select-seeds-1", (*S, "--select", "2", "--select-seeds", "1"), "--select-seeds must be from 2 to 100"),
    ("search-select-final-seeds-below", (*S, "--select", "2", "--select-final-seeds", "2"), "--select-final-seeds must be from --select-seeds (3) to 100"),
    ("search-evaluator-unknown", (*S, "--evaluator", "oracle"), "--evaluator 'oracle': allowed: supernet"),
    ("search-nb201-without-table", ("nas.search", "--space", "nb201", "--flops", "60M"), "--space nb201 has no supernet"),
    ("search-npz-huge-label", (*S, "--data", "{huge_label_npz}"), "holds the label 1099511627776; labels must be class indices 0 to"),
    ("search-folder-one-class", (*S, "--data", "{one_class_folder}"), "train/ has one class folder (cat); a classifier needs at least 2"),
    ("search-folder-corrupt-image", (*S, "--data", "{corrupt_folder}"), "broken.png cannot be read"),
    ("search-val-fraction-0.999", (*S, "--val-fraction", "0.999"), "--val-fraction 0.999: "),
    ("search-val-fraction-1", (*S, "--val-fraction", "1"), "--val-fraction must be between 0 and 1"),
    ("search-seed-negative", (*S, "--seed", "-1"), "--seed must be an integer from 0 to 4,294,967,295, got '-1'"),
    ("search-seed-2**70", (*S, "--seed", str(2**70)), "--seed must be an integer from 0 to 4,294,967,295"),
    ("search-trials-1e20", (*S, "--trials", "1e20"), "invalid int value: '1e20'"),
    ("search-trials-10**20", (*S, "--trials", str(10**20)), "a search takes at most 100,000 trials"),
    ("search-out-300-characters", (*S, "--out", "{long_out}"), "bytes long; a folder name is a plain portable name"),
    ("search-out-dangling-symlink", (*S, "--out", "{dangling}"), "is a symbolic link"),
    ("search-out-rtl-emoji", (*S, "--out", "{odd_out}"), "\\u202e"),
    ("search-space-file-syntax", ("nas.search", "--space-file", "{syntax_py}", "--space", "psvit_ext", "--flops", "4.5G"), "syntax error at line 1"),
    ("search-space-file-missing", ("nas.search", "--space-file", "/nonexistent/space.py", "--flops", "4.5G"), "file does not exist"),
    ("search-supernet-missing", (*S, "--supernet", "/nonexistent/s.pt"), "file does not exist"),
    ("search-supernet-wrong-keys", (*S, "--supernet", "{wrong_keys_pt}"), "its weights do not fit the psvit_ext supernet"),
    ("search-supernet-zip-exploit", (*S, "--supernet", "{zip_pt}"), "{zip_pt}"),
    ("search-supernet-legacy-exploit", (*S, "--supernet", "{legacy_pt}"), "{legacy_pt}"),
    ("search-supernet-raw-exploit", (*S, "--supernet", "{raw_pt}"), "{raw_pt}"),
    # nas.search --resume: the run folder is data, checked field by field; flags are not silently ignored
    ("resume-not-a-run", ("nas.search", "--resume", "{empty_dir}"), "not a search run (no config.json)"),
    ("resume-missing", ("nas.search", "--resume", "/nonexistent/run"), "does not exist"),
    ("resume-config-list", ("nas.search", "--resume", "{run_list}"), "not a nas.search configuration"),
    ("resume-no-settings", ("nas.search", "--resume", "{run_nosettings}"), "has no 'settings'"),
    ("resume-trials-word", ("nas.search", "--resume", "{run_trials_str}"), "settings.trials is \"many\"; allowed: an integer >= 1"),
    ("resume-unknown-setting", ("nas.search", "--resume", "{run_unknown_setting}"), "settings.evil is not a search setting"),
    ("resume-space-file-not-given", ("nas.search", "--resume", "{run_pwn}"), "give that file again with --space-file"),
    ("resume-space-file-hash", ("nas.search", "--resume", "{run_pwn}", "--space-file", "{pwn_py}"), "differs from"),
    ("resume-with-flops", ("nas.search", "--resume", "{run_ok}", "--flops", "3G"), "--flops cannot be changed"),
    ("resume-fewer-trials", ("nas.search", "--resume", "{run_ok}", "--trials", "1"), "already asks for 2"),
    ("resume-space-file-for-builtin", ("nas.search", "--resume", "{run_ok}", "--space-file", "{other_py}"), "needs no space file"),
    # nas.train_supernet
    ("train-threads", ("nas.train_supernet", "--space", "psvit_ext", "--threads", "-1", "--out", "{t}/train_threads"), "--threads"),
    ("train-space", ("nas.train_supernet", "--space", "nope"), "unknown space 'nope'"),
    ("train-strategy", ("nas.train_supernet", "--strategy", "greedy", "--out", "{t}/train_strategy"), "allowed: sandwich"),
    ("train-epochs", ("nas.train_supernet", "--epochs", "0", "--out", "{t}/train_epochs"), "--epochs must be at least 1"),
    ("train-lr", ("nas.train_supernet", "--lr", "0", "--out", "{t}/train_lr"), "--lr must be a positive finite number"),
    ("train-lr-inf", ("nas.train_supernet", "--lr", "inf", "--out", "{t}/train_lr_inf"), "--lr must be a positive finite number"),
    ("train-epochs-huge", ("nas.train_supernet", "--epochs", str(10**9), "--out", "{t}/train_epochs_huge"), "--epochs must be at most"),
    ("search-cpus-per-trial-inf", (*S, "--cpus-per-trial", "inf"), "--cpus-per-trial must be positive"),
    ("train-npz-negative-label", ("nas.train_supernet", "--data", "{neg_npz}", "--out", "{t}/train_neg"), "holds the label -1"),
    ("train-out-is-a-file", ("nas.train_supernet", "--out", "{a_file}"), "{a_file}"),
    ("train-npz-huge-label", ("nas.train_supernet", "--data", "{huge_label_npz}", "--out", "{t}/train_huge"), "holds the label 1099511627776"),
    ("train-folder-one-class", ("nas.train_supernet", "--data", "{one_class_folder}", "--out", "{t}/train_one"), "one class folder (cat)"),
    ("train-folder-corrupt-image", ("nas.train_supernet", "--data", "{corrupt_folder}", "--out", "{t}/train_corrupt"),
     "broken.png cannot be read"),
    ("train-seed-negative", ("nas.train_supernet", "--seed", "-1"), "--seed must be an integer from 0 to 4,294,967,295"),
    ("train-seed-2**70", ("nas.train_supernet", "--seed", str(2**70)), "--seed must be an integer from 0 to 4,294,967,295"),
    ("train-out-300-characters", ("nas.train_supernet", "--out", "{long_out}"), "bytes long; a folder name is a plain portable name"),
    ("train-out-dangling-symlink", ("nas.train_supernet", "--out", "{dangling}"), "is a symbolic link"),
    ("train-out-rtl-emoji", ("nas.train_supernet", "--out", "{odd_out}"), "is not a plain portable folder name"),
    ("train-resume-zip-exploit", ("nas.train_supernet", "--resume", "--out", "{resume_zip}"), "supernet.pt"),
    ("train-resume-legacy-exploit", ("nas.train_supernet", "--resume", "--out", "{resume_legacy}"), "supernet.pt"),
    ("train-resume-raw-exploit", ("nas.train_supernet", "--resume", "--out", "{resume_raw}"), "supernet.pt"),
    # nas.retrain
    ("retrain-missing", ("nas.retrain", "/nonexistent/best.json"), "does not exist"),
    ("retrain-table-space", ("nas.retrain", "{nb201_arch}", "--epochs", "1"), "space nb201 has no modules to build and train"),
    ("profile-table-space", ("nas.profile", "{nb201_arch}", "--latency"), "space nb201 has no modules to build and profile"),
    ("retrain-not-json", ("nas.retrain", "{not_json}"), "not valid JSON"),
    ("retrain-deep-json", ("nas.retrain", "{deep_arch}"), "nested too deeply"),
    ("retrain-list-json", ("nas.retrain", "{list_json}"), "must be a JSON object"),
    ("retrain-extra-field", ("nas.retrain", "{extra_field}"), "unknown field 'comment'"),
    ("retrain-version-true", ("nas.retrain", "{version_true}"), "version: True is not supported"),
    ("retrain-unknown-space", ("nas.retrain", "{unknown_space}"), "unknown space 'no_such_space'"),
    ("retrain-aa", ("nas.retrain", "{arch}", "--aa", "rand-zzz", "--epochs", "1"), "--aa 'rand-zzz'"),
    ("retrain-recipe", ("nas.retrain", "{arch}", "--recipe", "fast"), "--recipe 'fast'"),
    ("retrain-epochs", ("nas.retrain", "{arch}", "--epochs", "0"), "--epochs must be at least 1"),
    ("retrain-top", ("nas.retrain", "{arch}", "--top", "2"), "--top 2"),
    ("retrain-out-is-a-file", ("nas.retrain", "{arch}", "--out", "{a_file}"), "is a file"),
    ("retrain-npz-huge-label", ("nas.retrain", "{arch}", "--data", "{huge_label_npz}"), "holds the label 1099511627776"),
    ("retrain-folder-one-class", ("nas.retrain", "{arch}", "--data", "{one_class_folder}"), "one class folder (cat)"),
    ("retrain-folder-corrupt-image", ("nas.retrain", "{arch}", "--data", "{corrupt_folder}"), "broken.png cannot be read"),
    ("retrain-seed-negative", ("nas.retrain", "{arch}", "--seed", "-1"), "--seed must be an integer from 0 to 4,294,967,295"),
    ("retrain-seed-2**70", ("nas.retrain", "{arch}", "--seed", str(2**70)), "--seed must be an integer from 0 to 4,294,967,295"),
    ("retrain-out-300-characters", ("nas.retrain", "{arch}", "--out", "{long_out}"), "bytes long; a folder name is a plain portable name"),
    ("retrain-out-dangling-symlink", ("nas.retrain", "{arch}", "--out", "{dangling}"), "is a symbolic link"),
    ("retrain-out-rtl-emoji", ("nas.retrain", "{arch}", "--out", "{odd_out}"), "is not a plain portable folder name"),
    ("retrain-threads", ("nas.retrain", "{arch}", "--threads", "-1"), "--threads"),
    ("retrain-data", ("nas.retrain", "{arch}", "--data", "{neg_npz}"), "holds the label -1"),
    ("retrain-run-space-file", ("nas.retrain", "{best_pwn}", "--epochs", "1"), "--space-file"),
    ("retrain-init-zip-exploit", ("nas.retrain", "{arch}", "--init", "supernet", "--supernet", "{zip_pt}"), "{zip_pt}"),
    ("retrain-init-legacy-exploit", ("nas.retrain", "{arch}", "--init", "supernet", "--supernet", "{legacy_pt}"), "{legacy_pt}"),
    ("retrain-init-raw-exploit", ("nas.retrain", "{arch}", "--init", "supernet", "--supernet", "{raw_pt}"), "{raw_pt}"),
    ("retrain-resume-zip-exploit", ("nas.retrain", "{arch}", "--resume", "--out", "{retrain_zip}"), "checkpoint.pt"),
    ("retrain-resume-legacy-exploit", ("nas.retrain", "{arch}", "--resume", "--out", "{retrain_legacy}"), "checkpoint.pt"),
    ("retrain-resume-raw-exploit", ("nas.retrain", "{arch}", "--resume", "--out", "{retrain_raw}"), "checkpoint.pt"),
    # nas.profile
    ("profile-missing", ("nas.profile", "/nonexistent/a.json"), "does not exist"),
    ("profile-not-json", ("nas.profile", "{not_json}"), "not valid JSON"),
    ("profile-deep-json", ("nas.profile", "{deep_arch}"), "nested too deeply"),
    ("profile-extra-field", ("nas.profile", "{extra_field}"), "unknown field 'comment'"),
    ("profile-version-true", ("nas.profile", "{version_true}"), "version: True is not supported"),
    ("profile-stages-string", ("nas.profile", "{stages_str}"), "stages: must be a list"),
    ("profile-unknown-space", ("nas.profile", "{unknown_space}"), "unknown space 'no_such_space'"),
    ("profile-unknown-timm", ("nas.profile", "timm:no_such_model_xyz"), "unknown timm model"),
    ("profile-timm-img-size-7", ("nas.profile", "timm:deit_tiny_patch16_224", "--img-size", "7"), "--img-size 7"),
    ("profile-img-size-0", ("nas.profile", "timm:deit_tiny_patch16_224", "--img-size", "0"), "--img-size must be a positive"),
    ("profile-arch-img-size-8", ("nas.profile", "{arch}", "--img-size", "8"), "--img-size 8"),
    ("profile-batch", ("nas.profile", "{arch}", "--latency", "--batch-size", "0"), "--batch-size must be at least 1"),
    ("profile-device", ("nas.profile", "{arch}", "--latency", "--device", "tpu"), "--device 'tpu'"),
    # nas.report
    ("report-missing", ("nas.report", "/nonexistent/run"), "does not exist"),
    ("report-not-a-run", ("nas.report", "{empty_dir}"), "not a search run"),
    ("report-a-file", ("nas.report", "{a_file}"), "not a folder"),
    ("report-inf-accuracy", ("nas.report", "{report_inf_acc}"), "has acc inf"),
    ("report-negative-macs", ("nas.report", "{report_neg_macs}"), "has macs -1.0"),
    ("report-accuracy-above-1", ("nas.report", "{report_acc_above_1}"), "between 0 and 1"),
    ("report-missing-trial-number", ("nas.report", "{report_nan_trial}"), "column trial must number each trial once"),
    ("report-settings-flops-string", ("nas.report", "{report_flops_str}"), "settings.flops is \"4.5G\""),
    ("report-twice", ("nas.report", "{report_flops_str}", "{report_flops_str}"), "given twice"),
    ("report-out-is-a-file", ("nas.report", "{report_neg_macs}", "--out", "{a_file}"), "is a file"),
    ("report-out-300-characters", ("nas.report", "{report_neg_macs}", "--out", "{long_out}"), "bytes long; a folder name is a plain portable name"),
    ("report-out-dangling-symlink", ("nas.report", "{report_neg_macs}", "--out", "{dangling}"), "is a symbolic link"),
    ("report-out-rtl-emoji", ("nas.report", "{report_neg_macs}", "--out", "{odd_out}"), "is not a plain portable folder name"),
    # nas.audit
    ("audit-seed-negative", ("nas.audit", "{run_ok}", "--seed", "-1"), "--seed must be an integer from 0 to 4,294,967,295"),
    ("audit-seed-2**70", ("nas.audit", "{run_ok}", "--seed", str(2**70)), "--seed must be an integer from 0 to 4,294,967,295"),
    ("audit-out-300-characters", ("nas.audit", "{run_ok}", "--out", "{long_out}"), "bytes long; a folder name is a plain portable name"),
    ("audit-out-dangling-symlink", ("nas.audit", "{run_ok}", "--out", "{dangling}"), "is a symbolic link"),
    ("audit-out-rtl-emoji", ("nas.audit", "{run_ok}", "--out", "{odd_out}"), "is not a plain portable folder name"),
    ("audit-standalone-dir-dangling-symlink", ("nas.audit", "{run_ok}", "--standalone-dir", "{dangling}"), "is a symbolic link"),
    # nas.spaces
    ("spaces-samples-0", ("nas.spaces", "psvit_ext", "--samples", "0"), "--samples must be at least 1"),
    ("spaces-samples-negative", ("nas.spaces", "psvit_ext", "--samples", "-1"), "--samples must be at least 1"),
    ("spaces-unknown", ("nas.spaces", "nope"), "unknown space 'nope'"),
    ("spaces-flops", ("nas.spaces", "psvit_ext", "--flops", "lots"), "--flops: 'lots'"),
]


def _listing(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def workdir(tmp_path):
    """A working directory whose results/ already holds a run and a best.json, as a user's would."""
    results = tmp_path / "results"
    (results / "old-run").mkdir(parents=True)
    (results / "old-run" / "trials.csv").write_text("trial,acc\n0,0.5\n")
    (results / "best.json").write_text(json.dumps({"space": "psvit_ext", "arch": _arch()}))
    return tmp_path


def test_the_corpus_covers_every_command():
    commands = {case[1][0] for case in CASES}
    assert commands == {"nas.search", "nas.train_supernet", "nas.retrain", "nas.profile", "nas.report", "nas.spaces", "nas.audit"}
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("name, command, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(files, workdir, name, command, fragment):
    args = [a.format(**files) for a in command[1:]]
    before = _listing(workdir / "results")
    proc = run_main(command[0], *args, cwd=workdir)
    assert_user_error(proc, fragment.format(**files))
    assert _listing(workdir / "results") == before
    assert not Path(files["marker"]).exists(), "code from a file the user did not name ran"
