"""The papers' models as named members of the spaces: they validate, build through timm, cost what their
docstrings say (analytic == counted), and work wherever an architecture file does."""
import json

import pytest
import timm
import torch

import supernet  # noqa: F401  (registers the spaces' timm models)
from conftest import assert_user_error, run_main
from nas.measure.costs import arch_costs, count_macs
from search_spaces import get_reference, get_space, reference_doc, reference_names

REFERENCES = [(space, name) for space in ("psvit", "psvit_ext") for name in reference_names(space)]


def test_each_space_names_its_papers_models():
    assert set(reference_names("psvit")) == {"deit_s"}
    assert set(reference_names("psvit_ext")) >= {"stvit_s", "strip_mlp_t", "pvt_spm", "maformer"}


@pytest.mark.parametrize("space_name, name", REFERENCES, ids=[f"{s}:{n}" for s, n in REFERENCES])
def test_reference_builds_through_timm_and_costs_what_its_docstring_says(space_name, name):
    space = get_space(space_name)
    arch = get_reference(space_name, name)
    with torch.device("meta"):
        model = timm.create_model(space_name, arch=name)
    counted = count_macs(model, torch.zeros(1, 3, 224, 224, device="meta"))
    analytic = arch_costs(arch, space.target)
    assert abs(analytic.macs - counted) <= 0.005 * counted and analytic.params == sum(p.numel() for p in model.parameters())
    doc = " ".join(reference_doc(space_name, name).split())
    assert f"{analytic.macs / 1e9:.2f} GMACs" in doc and f"{analytic.params / 1e6:.1f}M params" in doc, doc


def test_deit_s_like_member_is_deit_s_within_five_percent():
    with torch.device("meta"):
        deit = timm.create_model("deit_small_patch16_224")
    deit_macs, deit_params = count_macs(deit, torch.zeros(1, 3, 224, 224, device="meta")), sum(p.numel() for p in deit.parameters())
    ours = arch_costs(get_reference("psvit", "deit_s"), get_space("psvit").target)
    assert abs(ours.macs / deit_macs - 1) <= 0.05 and abs(ours.params / deit_params - 1) <= 0.05
    arch = get_reference("psvit", "deit_s")
    assert arch.depths == (0, 12, 0) and get_space("psvit").target.embed_dims[1] == 384
    assert {layer.block for _, _, layer in arch.layers()} == {"mhsa"}


def test_stvit_s_keeps_its_depths_and_cells():
    arch, space = get_reference("psvit_ext", "stvit_s"), get_space("psvit_ext")
    assert arch.depths == (3, 5, 9, 3)
    from search_spaces.vocabulary import cells_per_side

    cells = [cells_per_side(side, stage[0].grid) for side, stage in zip(space.target.grids(), arch.stages)]
    assert cells == [8, 4, 1, 1]  # STViT-S's super-token cells at 224x224


def test_profile_and_bad_reference_names(tmp_path):
    proc = run_main("nas.profile", "psvit_ext:stvit_s")
    assert proc.returncode == 0 and "MACs: 4.08 G" in proc.stdout and "params: 24.6 M" in proc.stdout
    assert_user_error(run_main("nas.profile", "psvit_ext:stvit_xl"), "psvit_ext has no reference architecture 'stvit_xl'",
                      "psvit_ext:stvit_s")


def test_retrain_a_reference(tmp_path):
    from conftest import toy_npz

    data = toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "rt"
    proc = run_main("nas.retrain", "psvit_ext:strip_mlp_t", "--data", data, "--epochs", "1", "--batch-size", "16", "--no-latency",
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arch"] == get_reference("psvit_ext", "strip_mlp_t").to_dict() and metrics["source"]["run"] is None
    assert metrics["target_macs"] == arch_costs(get_reference("psvit_ext", "strip_mlp_t"), get_space("psvit_ext").target).macs
