import json

import pytest

from search_spaces import get_space

from conftest import assert_user_error, run_main, run_module


def test_profile_timm_deit_small():
    proc = run_module("nas.profile", "timm:deit_small_patch16_224")
    assert proc.returncode == 0, proc.stderr
    assert "MACs: 4.60 G" in proc.stdout and "params: 22.1 M" in proc.stdout


def test_profile_arch_prints_counted_and_analytic(tmp_path):
    arch = get_space("psvit_ext").sample(0)
    arch.save(tmp_path / "a.json")
    proc = run_main("nas.profile", str(tmp_path / "a.json"), "--scale", "proxy")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    counted = next(l for l in lines if l.startswith("MACs:")).split()[1]
    analytic = next(l for l in lines if l.startswith("analytic")).split()[2]
    assert counted == analytic


def _layer(block, **kw):
    return {"block": block, **kw}


def _ext(stages=None, merges=None, space="psvit_ext"):
    arch = get_space("psvit_ext").sample(0).to_dict()
    if stages is not None:
        arch["stages"] = stages
    if merges is not None:
        arch["merges"] = merges
    arch["space"] = space
    return arch


def _replace(arch, i, j, layer):
    arch["stages"][i][j] = layer
    return arch


BAD = {
    "unknown-block": (lambda: _replace(_ext(), 2, 0, _layer("conv9")), ["stages[2][0].block", "'conv9'", "allowed: mhsa, shared, strip, stoken"]),
    "wrong-layer-count": (lambda: _ext(stages=_ext()["stages"][:1] + [[_layer("mhsa", mlp_ratio=4)] * 9] + _ext()["stages"][2:]), ["stages[1]: 9 layers", "allowed depths: 2, 3, 4, 5"]),
    "strip-width-4": (lambda: _replace(_ext(), 2, 0, _layer("strip", strip_width=4, mlp_ratio=3)), ["strip_width: 4", "allowed: 1, 3, 5, 7"]),
    "share-after-non-mhsa": (lambda: _replace(_replace(_ext(), 2, 0, _layer("strip", strip_width=3, mlp_ratio=3)), 2, 1, _layer("shared", mlp_ratio=4)), ["'shared' must follow an 'mhsa' layer", "'strip'"]),
    "wrong-space": (lambda: _ext(space="vit_zoo"), ["unknown space 'vit_zoo'", "known spaces: nb201, psvit, psvit_ext"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_arch_json(tmp_path, case):
    make, fragments = BAD[case]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(make()))
    assert_user_error(run_main("nas.profile", str(path)), *fragments)


def test_missing_file(tmp_path):
    assert_user_error(run_main("nas.profile", str(tmp_path / "nope.json")), "does not exist")


def test_not_json(tmp_path):
    (tmp_path / "a.json").write_text("{oops")
    assert_user_error(run_main("nas.profile", str(tmp_path / "a.json")), "not valid JSON")


def test_unknown_timm_model():
    assert_user_error(run_main("nas.profile", "timm:deit_smal_patch16_224"), "unknown timm model 'deit_smal_patch16_224'", "deit_small_patch16_224")
