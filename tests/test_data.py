import numpy as np
import pytest
import torch

from nas.errors import UserError
from nas.data import BatchLoader, load_data, make_loader, same_data


def test_default_digits_split_is_seeded_and_disjoint():
    a = load_data(None, seed=0)
    b = load_data("digits", seed=0)
    assert a.name == "digits" and a.num_classes == 10 and a.img_size == 32
    assert a.train.images.shape[1:] == (3, 32, 32) and a.train.images.dtype == torch.uint8
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert len(a.val) == round(0.1 * (len(a.train) + len(a.val)))
    assert torch.equal(a.val.labels, b.val.labels) and torch.equal(a.val.images, b.val.images)
    c = load_data("digits", seed=1)
    assert not torch.equal(a.val.images, c.val.images)
    assert torch.equal(a.test.images, c.test.images)  # the test split does not move with the seed
    # no validation image is also a training image
    train = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train for x in a.val.images)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


def _arrays(n=40, size=8):
    rng = np.random.default_rng(0)
    return dict(x_train=rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), y_train=rng.integers(0, 3, n),
                x_test=rng.integers(0, 255, (10, size, size, 3), dtype=np.uint8), y_test=rng.integers(0, 3, 10))


def test_npz_follows_the_data(tmp_path):
    bundle = load_data(_npz(tmp_path / "d.npz", **_arrays()), seed=0)
    assert bundle.img_size == 8 and bundle.num_classes == 3 and len(bundle.train) == 36 and len(bundle.val) == 4
    x, y = next(iter(make_loader(bundle, "train", 8)))
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.float32 and y.shape == (8,)


def test_same_data_compares_npz_content_not_paths(tmp_path):
    a, b = _npz(tmp_path / "a.npz", **_arrays()), _npz(tmp_path / "b.npz", **_arrays())
    other = _arrays()
    other["y_train"][0] = (other["y_train"][0] + 1) % 3
    c = _npz(tmp_path / "c.npz", **other)
    assert same_data(a, b) and same_data("digits", "digits")
    assert not same_data(a, c) and not same_data(a, "digits") and not same_data(a, f"npz:{tmp_path / 'gone.npz'}")


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "missing array(s) y_test; required: x_train, y_train, x_test, y_test"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), "x_train has 40 images but y_train has 39 labels"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "must be uint8 images"),
])
def test_npz_errors(tmp_path, change, message):
    arrays = _arrays()
    change(arrays)
    with pytest.raises(UserError) as e:
        load_data(_npz(tmp_path / "d.npz", **arrays))
    assert message in str(e.value)


def test_missing_paths_and_bad_specs(tmp_path):
    with pytest.raises(UserError, match="file does not exist"):
        load_data(f"npz:{tmp_path}/nope.npz")
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(UserError, match="train/ has no class subfolders"):
        load_data(f"folder:{tmp_path}")
    with pytest.raises(UserError, match="needs train/ and val/"):
        load_data(f"folder:{tmp_path}/train")
    with pytest.raises(UserError, match="not understood"):
        load_data("::bad::")


def test_batch_loader_is_deterministic_per_epoch_and_augments():
    bundle = load_data("digits", seed=0)
    loader = BatchLoader(bundle.train, 32, bundle.mean, bundle.std, train=True, seed=3, flip=False)
    first = next(iter(loader))[0]
    assert torch.equal(first, next(iter(loader))[0])
    loader.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))[0])
    plain = BatchLoader(bundle.train, 32, bundle.mean, bundle.std, train=False)
    x, y = next(iter(plain))
    assert torch.equal(y, bundle.train.labels[:32])
    assert abs(x.mean().item()) < 0.5
    assert len(plain) == -(-len(bundle.train) // 32) and len(loader) == len(bundle.train) // 32


def test_rand_augment_changes_in_memory_training_batches_only():
    plain, augmented = load_data("digits", seed=0), load_data("digits", seed=0, auto_augment="rand-m9-mstd0.5")
    x_plain, y_plain = next(iter(make_loader(plain, "train", 16, seed=0)))
    x_aug, y_aug = next(iter(make_loader(augmented, "train", 16, seed=0)))
    assert x_aug.shape == x_plain.shape and torch.equal(y_aug, y_plain) and not torch.equal(x_aug, x_plain)
    v_plain, v_aug = next(iter(make_loader(plain, "val", 16))), next(iter(make_loader(augmented, "val", 16)))
    assert torch.equal(v_plain[0], v_aug[0])


def test_calibration_batches_are_fixed_and_two_evaluations_of_folder_data_agree(tmp_path):
    """BatchNorm is recalibrated on the same batches, under the evaluation transform, at every evaluation: two
    evaluations of one architecture on folder: data (fresh calibration loaders, as two trials or the search and the
    audit have) give the identical accuracy; the batches are the training images with the evaluation transform."""
    from conftest import TINY, toy_image_folder
    from nas.measure.evaluate import calibration_loader, evaluate
    from search_spaces import get_space
    from supernet import Supernet

    bundle = load_data(toy_image_folder(tmp_path / "imgs"), img_size=16, seed=0, val_fraction=0.25)
    assert bundle.train_eval is not None and len(bundle.train_eval) == len(bundle.train)
    first, second = calibration_loader(bundle), calibration_loader(bundle)
    a, b = list(first), list(second)
    assert len(a) == len(first) >= 2 and all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, first))  # replayed: the same tensors again
    index = bundle.train_eval.indices[int(torch.randperm(len(bundle.train_eval), generator=torch.Generator().manual_seed(7))[0])]
    assert torch.equal(a[0][0][0], bundle.train_eval.dataset[index][0])  # the evaluation transform, no augmentation
    space = get_space("psvit_ext")
    torch.manual_seed(0)
    net = Supernet(space, TINY["psvit_ext"].with_overrides(num_classes=bundle.num_classes)).eval()
    arch = next(a for a in (space.sample(s) for s in range(50)) if sum(l.block in ("stoken", "strip") for _, _, l in a.layers()) >= 3)
    val = make_loader(bundle, "val", 8)
    scores = [evaluate(net, arch, val, calibration_loader(bundle), calib_batches=2) for _ in range(2)]
    assert scores[0] == scores[1]
    with torch.no_grad():  # and the recalibrated path is the same network both times, to the bit
        from supernet.calibration import recalibrated

        x = next(iter(val))[0]
        outs = []
        for _ in range(2):
            with recalibrated(net, arch, calibration_loader(bundle)):
                outs.append(net(x, arch))
    assert torch.equal(outs[0], outs[1])
