"""The CPU guard against tensors made off the device (ccl/host_tensor_guard.py): it fails where CUDA fails,
passes where CUDA passes, catches the SAM stage's first crash on a GPU, and leaves libraries' own host-side
helpers alone. The real-path DAG test (tests/realpath/test_benchmark_layouts_dag.py) runs every real
stage under it through Snakemake."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from masks.masks_testkit import TINY_SAM_CFG, blob_image, build_tiny_sam

from ccl.host_tensor_guard import CCL_DIR, DeviceMixError, host_tensors_fail_on_meeting_the_device
from ccl.masks import MasksConfig
from ccl.masks.backends import sam as sam_backend

HERE = str(Path(__file__).resolve().parent) + os.sep


def guarded_here():
    """The guard with this file's tensors marked as ccl's would be."""
    return host_tensors_fail_on_meeting_the_device(code_dirs=(CCL_DIR, HERE))


def test_it_fails_where_cuda_fails_and_passes_where_cuda_passes():
    data = torch.arange(6.0, device="cpu")  # named: on the device
    with guarded_here():
        host = torch.zeros(6)  # line below is reported
        with pytest.raises(DeviceMixError, match=r"cat joins a tensor made on the host \(at .*test_host"):
            torch.cat([data, host])
        with pytest.raises(DeviceMixError):
            data + host
        with pytest.raises(DeviceMixError):  # a host tensor indexed by a device mask
            host[data > 2]
        assert float((data * torch.tensor(2.0)).sum()) == 30.0  # a host scalar meets the device: allowed
        assert data[torch.tensor([1, 2])].tolist() == [1.0, 2.0]  # host indices of a device tensor: allowed
        moved = torch.as_tensor(np.ones(6), dtype=torch.float32).to(data.device)
        assert float((data + moved).sum()) == 21.0  # moved to the data's device: fine
        assert float((host + host).sum()) == 0.0  # host with host: fine
        with pytest.raises(DeviceMixError):  # taken off the device, then joined with it
            torch.cat([data, data.cpu()])


def _empty_data_before_the_fix():
    """`ccl.masks.backends.sam._empty_data` as it was when the masks stage crashed on its first GPU run."""
    from segment_anything.utils.amg import MaskData

    return MaskData(
        rles=[],
        iou_preds=torch.zeros(0),
        stability_score=torch.zeros(0),
        boxes=torch.zeros(0, 4, dtype=torch.int64),
        points=torch.zeros(0, 2, dtype=torch.float64),
    )


def _generate(cfg: MasksConfig):
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_all_layer_point_grids

    grids = build_all_layer_point_grids(
        cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
    )
    return sam_backend.generate_levels(SamPredictor(build_tiny_sam()), blob_image(), cfg=cfg, point_grids=grids)


CROPPED = MasksConfig(**{**TINY_SAM_CFG, "crop_n_layers": 1, "sam_checkpoint": "unused"})


def test_it_catches_the_sam_stages_crash_on_its_first_gpu_run(monkeypatch):
    monkeypatch.setattr(
        sam_backend, "_empty_data", lambda device: _empty_data_before_the_fix(), raising=True
    )
    with guarded_here(), pytest.raises(DeviceMixError, match=r"cat joins a tensor made on the host"):
        _generate(CROPPED)


def test_sam_generation_with_crops_keeps_every_tensor_on_the_device():
    with host_tensors_fail_on_meeting_the_device():
        levels = _generate(CROPPED)
    assert len(levels) == 3 and sum(len(lv) for lv in levels) > 0
    unguarded = _generate(CROPPED)
    for a, b in zip(levels, unguarded, strict=True):
        np.testing.assert_array_equal(a.masks, b.masks)  # the guard changes no result


def test_a_librarys_own_host_side_helpers_are_not_flagged():
    """segment-anything's generator makes `torch.as_tensor(points)` on the host and moves what it filters
    by: correct on CUDA, and the guard, which marks only ccl's tensors, agrees."""
    from segment_anything import SamAutomaticMaskGenerator

    gen = SamAutomaticMaskGenerator(
        build_tiny_sam(), points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, crop_n_layers=1
    )
    with host_tensors_fail_on_meeting_the_device():
        assert len(gen.generate(blob_image())) > 0


def _mix_on_a_thread(data: torch.Tensor) -> list[BaseException]:
    """What a thread that joins `data` with a host-made tensor raised (a viewer render thread, say)."""
    import threading

    raised: list[BaseException] = []

    def work() -> None:
        try:
            torch.cat([data, torch.zeros(2)])
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            raised.append(e)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return raised


def test_threads_started_under_the_guard_are_guarded_and_others_are_not():
    """Torch keeps function modes per thread; ccl's viewer draws on its own threads."""
    import threading

    data = torch.arange(3.0)
    run_before = threading.Thread.run
    with guarded_here():
        raised = _mix_on_a_thread(data)
    assert [type(e) for e in raised] == [DeviceMixError]
    assert threading.Thread.run is run_before  # unwrapped at the guard's end
    assert _mix_on_a_thread(data) == []  # no guard, no error
