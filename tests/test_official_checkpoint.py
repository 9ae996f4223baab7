"""The reference checkpoint layout, the golden fixtures (tests/fixtures) and the export round
trip. Nothing here skips: the fixtures are part of the repository."""

from __future__ import annotations

import collections
import hashlib
import pickle
import re

import numpy as np
import pytest
import torch
from golden import FIXTURES, manifest, reference_weights

import ctcnet
from ctcnet.errors import CheckpointError
from ctcnet.weights import load_model, official_layout


def test_golden_fixture_files_match_their_recorded_sha256():
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    recorded = dict(re.findall(r"^\| `([\w.]+)` \| `([0-9a-f]{64})` \|$", readme, re.MULTILINE))
    assert len(recorded) == 5
    for name, digest in recorded.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name


@pytest.fixture(scope="module")
def weak_state():
    return reference_weights(strong=False)


def test_layout_matches_reference_manifest_key_for_key():
    entries = manifest()
    layout = official_layout()
    assert [e.key for e in layout] == [e["key"] for e in entries]
    for ours, ref in zip(layout, entries):
        assert (ours.ours is not None) == ref["used_in_forward"], ref["key"]
        if ours.ours is None:
            assert list(ours.shape) == ref["shape"], ref["key"]
    assert sum(e.ours is None for e in layout) == 198


@pytest.mark.parametrize(
    ("fixture", "strong", "tolerance"),
    [("golden_io.npz", False, 5e-7), ("golden_io_strong.npz", True, 1e-3)],
)
def test_golden_fixture_reproduced(fixture, strong, tolerance):
    data = np.load(FIXTURES / fixture)
    model = ctcnet.load_official_checkpoint(reference_weights(strong))
    with torch.no_grad():
        output = model(torch.from_numpy(data["input"]))
    error = (output - torch.from_numpy(data["output"])).abs().max().item()
    assert error <= tolerance, f"max abs error {error:.3g} > {tolerance}"


def test_export_round_trip_gives_all_entries_and_same_function(weak_state):
    model = ctcnet.load_official_checkpoint(weak_state)
    exported = ctcnet.export_official_state_dict(model)
    entries = manifest()
    assert list(exported) == [e["key"] for e in entries]
    for entry in entries:
        assert list(exported[entry["key"]].shape) == entry["shape"], entry["key"]
    for key, value in weak_state.items():  # live entries come back unchanged
        if key in {e.key for e in official_layout() if e.ours is not None}:
            assert torch.equal(exported[key], value), key
    again = ctcnet.load_official_checkpoint(exported)
    x = torch.rand(1, 3, 72, 72) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_dead_entries_do_not_change_the_output(weak_state):
    x = torch.rand(1, 3, 72, 72) * 2 - 1
    model = ctcnet.load_official_checkpoint(weak_state)
    perturbed = dict(weak_state)
    perturbed["embed.weight"] = perturbed["embed.weight"] + 1.0
    perturbed["res_layers.0.STL64.mlp.fc1.weight"] = torch.zeros(256, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ctcnet.load_official_checkpoint(perturbed)(x))


def test_accepts_module_prefix_wrappers_files_and_absent_dead_entries(weak_state, tmp_path):
    live = {e.key for e in official_layout() if e.ours is not None}
    prefixed = {f"module.{k}": v for k, v in weak_state.items() if k in live}
    path = tmp_path / "best.pth"
    torch.save({"state_dict": prefixed, "epoch": 3}, path)
    model = ctcnet.load_official_checkpoint(path)
    assert not model.training
    ref = ctcnet.load_official_checkpoint(weak_state)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 ref.state_dict().values()))


def test_mismatched_checkpoint_reports_every_problem_in_one_error(weak_state):
    broken = dict(weak_state)
    del broken["head.weight"]
    del broken["res_layers.2.compress1.bias"]
    broken["not.a.key"] = torch.zeros(1)
    broken["tail.bias"] = torch.zeros(4)
    with pytest.raises(CheckpointError) as info:
        ctcnet.load_official_checkpoint(broken)
    message = str(info.value)
    assert "\n" not in message
    for fragment in ("2 missing", "head.weight", "res_layers.2.compress1.bias",
                     "1 unexpected", "not.a.key", "1 with the wrong shape", "tail.bias"):
        assert fragment in message


def test_checkpoint_of_another_preset_is_rejected():
    reduced = ctcnet.export_official_state_dict(ctcnet.build_model("reduced"))
    with pytest.raises(CheckpointError, match="wrong shape"):
        ctcnet.load_official_checkpoint(reduced)


def test_unreadable_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ctcnet.load_official_checkpoint(tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
        ctcnet.load_official_checkpoint(corrupt)
    assert "\n" not in str(info.value)
    truncated = tmp_path / "truncated.pth"
    torch.save({"head.weight": torch.zeros(3, 3)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        ctcnet.load_official_checkpoint(truncated)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="dict of tensors"):
        ctcnet.load_official_checkpoint([1, 2, 3])


def test_reference_layout_needs_every_module():
    with pytest.raises(CheckpointError, match="every module"):
        ctcnet.export_official_state_dict(ctcnet.build_model("tiny", use_fsau=False))


@pytest.mark.parametrize("content", [b"101 lines of notes\n", b"e", b"{}"])
def test_text_file_as_checkpoint_is_named_not_a_checkpoint_by_the_api(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    for load in (ctcnet.load_official_checkpoint, load_model):
        with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
            load(path)
        assert "\n" not in str(info.value) and "weights_only" not in str(info.value)


def test_checkpoint_holding_python_objects_is_refused_without_running_it(tmp_path):
    path = tmp_path / "pickled.pth"
    with open(path, "wb") as f:
        pickle.dump({"head.weight": torch.zeros(1), "hook": collections.Counter()}, f, protocol=4)
    with pytest.raises(CheckpointError, match="holds Python objects") as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message


def test_checkpoint_error_is_one_class_under_the_root():
    assert ctcnet.CheckpointError is CheckpointError
    assert issubclass(CheckpointError, ValueError) and issubclass(CheckpointError, ctcnet.CTCNetError)
