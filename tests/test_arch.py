import json

import pytest

from search_spaces import FORMAT_VERSION, Arch, ArchError, Layer, UnknownSpaceError, get_space, list_spaces


def test_json_round_trip_of_sampled_archs(space):
    for seed in range(20):
        arch = space.sample(seed)
        text = arch.to_json()
        again = Arch.from_json(text)
        assert again == arch
        data = json.loads(text)
        assert data["space"] == space.name and data["version"] == FORMAT_VERSION
        # scale-free: choices only, no tensor sizes
        assert set(data) == {"space", "version", "merges", "stages"}


def test_save_and_load(tmp_path, space):
    arch = space.sample(1)
    arch.save(tmp_path / "a.json")
    assert Arch.load(tmp_path / "a.json") == arch
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file


def test_wrapped_record_is_accepted(space):
    arch = space.sample(2)
    assert Arch.from_dict({"arch": arch.to_dict(), "accuracy": 0.5}) == arch


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"space": "psvit"}', "no 'stages' field"),
        ('{"space": "psvit", "version": 9, "merges": [], "stages": []}', "version: 9 is not supported; allowed: 2"),
        ('{"space": "psvit", "version": 1, "merges": [], "stages": []}', "version: 1 is not supported; allowed: 2 (version 1 files predate"),
        ('{"space": "psvit", "merges": [], "stages": [[{"block": "mhsa", "heads": 3}]]}', "unknown field 'heads'"),
    ],
)
def test_malformed_json_messages(text, message):
    with pytest.raises(ArchError, match=None) as e:
        Arch.from_json(text)
    assert message in str(e.value)


def test_missing_file_message(tmp_path):
    with pytest.raises(ArchError) as e:
        Arch.load(tmp_path / "nope.json")
    assert "does not exist" in str(e.value)


def test_get_space_unknown_lists_known():
    known = list_spaces()  # the built-in spaces, and any a test module registered before this one runs
    assert {"psvit", "psvit_ext"} <= set(known) and known == sorted(known)
    with pytest.raises(UnknownSpaceError) as e:
        get_space("nope")
    assert str(e.value) == f"unknown space 'nope'; known spaces: {', '.join(known)}"


def test_layer_to_dict_drops_unused_fields():
    assert Layer("strip", strip_width=3).to_dict() == {"block": "strip", "strip_width": 3}
