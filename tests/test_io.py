"""ccl.io: atomic writes, the HDF5 frame, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from ccl.io import (
    H5FormatError,
    atomic_path,
    atomic_write_json,
    file_sha256,
    load_safetensors,
    load_torch_weights,
    open_h5_for_read,
    save_safetensors,
    write_h5,
)
from ccl.io.h5 import frame_names_of, put_array, read_json_attr


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"], "temporary file left behind"


def test_h5_round_trip_records_params_and_frames(tmp_path):
    path = tmp_path / "x.h5"
    with write_h5(
        path,
        kind="demo",
        format_version=1,
        params={"k": 2},
        model={"simulated": True},
        frame_names=["b", "a"],
    ) as f:
        g = f.create_group("b")
        put_array(g, "big", np.arange(5000, dtype=np.int32).reshape(50, 100))
    with open_h5_for_read(path, kind="demo") as f:
        assert read_json_attr(f, "params") == {"k": 2}
        assert read_json_attr(f, "model")["simulated"] is True
        assert frame_names_of(f) == ["b", "a"]
        assert f["b/big"].compression == "gzip"
        np.testing.assert_array_equal(f["b/big"][:], np.arange(5000).reshape(50, 100))


def test_h5_killed_mid_write_leaves_nothing(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(KeyboardInterrupt), write_h5(path, kind="demo", format_version=1, params={}) as f:
        f.create_dataset("a", data=np.zeros(3))
        raise KeyboardInterrupt
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_h5_incomplete_wrong_kind_and_garbage_are_refused(tmp_path):
    import h5py

    unmarked = tmp_path / "unmarked.h5"
    with h5py.File(unmarked, "w") as f:  # as a crashed writer that bypassed write_h5 would leave it
        f.attrs["kind"] = "demo"
        f.attrs["format_version"] = 1
    with pytest.raises(H5FormatError, match="unmarked.h5.*incomplete"):
        open_h5_for_read(unmarked, kind="demo")

    good = tmp_path / "good.h5"
    with write_h5(good, kind="demo", format_version=1, params={}):
        pass
    with pytest.raises(H5FormatError, match="good.h5.*'demo'.*expected 'masks'"):
        open_h5_for_read(good, kind="masks")
    with pytest.raises(H5FormatError, match="format_version 1"):
        open_h5_for_read(good, kind="demo", format_versions=(2,))

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(good.read_bytes()[:300])  # truncated by a killed copy
    with pytest.raises(H5FormatError, match="garbage.h5"):
        open_h5_for_read(garbage, kind="demo")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        open_h5_for_read(tmp_path / "missing.h5", kind="demo")


def test_safetensors_round_trip_and_strict_keys(tmp_path):
    import torch

    path = tmp_path / "ck.safetensors"
    save_safetensors(path, {"w": torch.ones(2, 3), "b": torch.zeros(3)}, {"scene": "s", "iteration": 7})
    tensors, header = load_safetensors(path, expected_keys=["w", "b"])
    assert header == {"scene": "s", "iteration": 7}
    assert torch.equal(tensors["w"], torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"ck.safetensors.*missing \['c'\].*unexpected \['b'\]"):
        load_safetensors(path, expected_keys=["w", "c"])


class NotAWeight:
    """An arbitrary object: only pickle can store it, so weights_only loading must refuse it."""


def test_torch_weights_load_without_pickle(tmp_path):
    import torch

    good = tmp_path / "sam.pth"
    torch.save({"model": {"a": torch.ones(1)}}, good)
    assert set(load_torch_weights(good)) == {"a"}

    evil = tmp_path / "evil.pth"
    torch.save({"x": NotAWeight()}, evil)  # arbitrary objects need pickle: weights_only refuses them
    with pytest.raises(ValueError, match="evil.pth"):
        load_torch_weights(evil)


def test_file_sha256(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
