"""FaceSRDataset as the training loop uses it: keyed draws, patches, the bounded cache, the
stronger augmentation, the step sampler and DataLoader workers."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ctcnet.data.augment import FaceAugment
from ctcnet.data.datasets import FaceSRDataset
from ctcnet.data.sampling import StepSampler, batch_indices, split_by_identity


@pytest.fixture
def faces(tmp_path) -> Path:
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        img = np.kron(rng.normal(0, 40, (4, 4, 3)), np.ones((8, 8, 1))) + 128
        img += rng.normal(0, 3, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_item_is_a_pure_function_of_seed_step_and_slot(faces):
    a = FaceSRDataset(faces, hr_size=32, augment=True, seed=3, patch_size=16)
    b = FaceSRDataset(faces, hr_size=32, augment=True, seed=3, patch_size=16)
    for _ in range(3):  # other items drawn in between change nothing
        b[(4, 0, 0)]
    first, again = a[(2, 7, 1)], b[(2, 7, 1)]
    assert torch.equal(first["lr_up"], again["lr_up"]) and torch.equal(first["hr"], again["hr"])
    other_slot, other_seed = a[(2, 7, 0)], FaceSRDataset(
        faces, hr_size=32, augment=True, seed=4, patch_size=16
    )[(2, 7, 1)]
    assert not torch.equal(first["hr"], other_slot["hr"])
    assert not torch.equal(first["hr"], other_seed["hr"])


def test_patch_is_a_scale_aligned_window_of_the_whole_degraded_face(faces):
    whole = FaceSRDataset(faces, hr_size=32, seed=1)[(3, 5, 0)]
    patch = FaceSRDataset(faces, hr_size=32, seed=1, patch_size=16)[(3, 5, 0)]
    assert patch["lr_up"].shape == (3, 16, 16) and patch["lr"].shape == (3, 2, 2)
    hits = [
        (top, left)
        for top in range(0, 17, 8)
        for left in range(0, 17, 8)
        if torch.equal(whole["lr_up"][:, top : top + 16, left : left + 16], patch["lr_up"])
        and torch.equal(whole["hr"][:, top : top + 16, left : left + 16], patch["hr"])
    ]
    assert len(hits) == 1
    top, left = hits[0]
    assert torch.equal(whole["lr"][:, top // 8 : top // 8 + 2, left // 8 : left // 8 + 2], patch["lr"])


def test_draw_with_a_patch_side_overrides_the_dataset_patch(faces):
    data = FaceSRDataset(faces, hr_size=32, seed=1, patch_size=16)
    assert data[(0, 0, 0, 32)]["hr"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="patch size 20"):
        data[(0, 0, 0, 20)]
    with pytest.raises(ValueError, match="patch size 40"):
        FaceSRDataset(faces, hr_size=32, patch_size=40)


def test_cache_holds_at_most_cache_size_faces(faces):
    data = FaceSRDataset(faces, hr_size=32, cache_size=2)
    for i in [0, 1, 2, 3, 1]:
        data.load_hr(i)
    assert list(data._cache) == [3, 1]  # least recently used first
    assert data.load_hr(1) is data._cache[1]
    uncached = FaceSRDataset(faces, hr_size=32)
    uncached.load_hr(0)
    assert not uncached._cache


def test_strong_augmentation_is_seeded_and_keeps_the_size():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    aug = FaceAugment(32)
    a, b = aug(img, random.Random("k")), aug(img, random.Random("k"))
    assert a.size == (32, 32) and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(aug(img, random.Random("other"))))
    # the zoom covers the rotated frame: a white image stays white (no black corners)
    white = Image.new("RGB", (32, 32), (200, 200, 200))
    plain = FaceAugment(32, jitter=0.0)
    for k in range(20):
        assert np.asarray(plain(white, random.Random(k))).min() >= 198


def test_step_sampler_started_later_yields_the_tail(faces):
    full = list(StepSampler(5, 4, seed=2, steps=6))
    tail = list(StepSampler(5, 4, seed=2, steps=6, start=3))
    assert tail == full[3:] and len(StepSampler(5, 4, seed=2, steps=6, start=3)) == 3
    assert [i for i, *_ in full[1]] == batch_indices(2, 1, 4, 5)
    ranks = [list(StepSampler(5, 4, 2, 6, rank=r, world=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == full  # the ranks split each global batch
    patches = StepSampler(5, 4, 2, 6, patch_at=lambda step: 32 if step >= 4 else 16)
    assert [batch[0][3] for batch in patches] == [16, 16, 16, 16, 32, 32]


def test_workers_give_the_same_batches_as_the_main_process(faces):
    data = FaceSRDataset(faces, hr_size=32, augment=True, seed=5, patch_size=16)
    sampler = StepSampler(len(data), 2, seed=5, steps=4)
    inline = list(DataLoader(data, batch_sampler=sampler, num_workers=0))
    parallel = list(DataLoader(data, batch_sampler=sampler, num_workers=2))
    for a, b in zip(inline, parallel, strict=True):
        assert a["name"] == b["name"] and torch.equal(a["lr_up"], b["lr_up"])


def test_split_by_identity_never_splits_an_identity():
    who = ["ann", "ann", "bob", "cat", "dan", "dan", "dan", "eve"]
    train, val = split_by_identity(who, 3)
    assert 1 <= len(val) <= 3 and sorted(train + val) == list(range(len(who)))
    assert not {who[i] for i in train} & {who[i] for i in val}
    assert split_by_identity(who, 3) == (train, val)  # fixed, not random


def test_negative_index_is_the_same_item_as_its_positive_twin(tmp_path):
    # A pure function of (seed, key): ds[-1] must equal ds[len - 1], augmentation and crop included.
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds = FaceSRDataset(tmp_path, hr_size=64, patch_size=32, augment=True, seed=7)
    a, b = ds[-1], ds[len(ds) - 1]
    assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr_up"], b["lr_up"])
