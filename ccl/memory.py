"""Preflight estimates of the model stages' peak memory, from the working image size and the batch keys.

A SAM job on 4000 x 3000 photos with `scene_load.max_image_side: 0` needs more memory than its rule
asks for; the kernel then kills it with SIGKILL, which no Python handler sees. These estimates let the
preflight say so before any job, naming the keys that lower it, and let each job's log say, when the
job starts, what it is expected to need (a log that ends there was most likely killed for memory).

One function per stage, each returning (host bytes, GPU bytes) for one job: the terms that grow with
the image or the batch, plus the model's weights (twice the checkpoint file on the host while it is
read: the loaded dict and the model). They are estimates of the largest tensors alive at once, not
measurements: each term's derivation is in its function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GB = 1e9

# Masks a level keeps after its filters and NMS on one image: LangSplat's SAM settings give 20-60 masks
# per view on LERF-OVS (ccl.preflight.MASKS_PER_VIEW_CEILING); 64 bounds them.
KEPT_MASKS_PER_LEVEL = 64
# Objects SAM2 tracks through the video: the first frame's masks of one scale, bounded as above.
TRACKED_OBJECTS = 64

# The keys that lower each stage's memory (named in every warning and in each job's log).
LOWER_KEYS = {
    "masks": "scene_load.max_image_side, scene_load.downscale, masks.points_per_batch",
    "tracks": "scene_load.max_image_side, scene_load.downscale, tracks.offload_video_to_cpu, "
    "tracks.offload_state_to_cpu",
    "features": "scene_load.max_image_side, scene_load.downscale, features.batch_size",
}
RULES = {"masks": "sam_masks", "tracks": "track_masks", "features": "clip_features"}


def _file_bytes(path: Any) -> int:
    try:
        return os.path.getsize(Path(str(path)).expanduser()) if path else 0
    except OSError:
        return 0


def sam_masks_bytes(
    wh: tuple[int, int],
    *,
    points_per_batch: int,
    model_input: int = 1024,
    checkpoint_bytes: int = 0,
    cuda: bool = False,
) -> tuple[float, float]:
    """(host, GPU) bytes of one sam_masks job on images of working size `wh`.

    Per batch of P prompts SAM's decoder returns 3 outputs whose float32 logits are upsampled to its
    input size (model_input², 1024 px) and then to the image's size (SamPredictor.postprocess_masks);
    both are alive at once: P x 3 x 4 B x (model_input² + H W). One level's filtered copy and its
    thresholded bools add P x (4 + 1) B x H W. At 988 x 731 px and 256 prompts that is about 5.5 GB
    (ccl.masks.backends.sam.AUTO_POINTS_PER_BATCH). After the crops, each of the 3 levels' kept masks
    (KEPT_MASKS_PER_LEVEL) are decoded to H x W bools and stacked (the list and the stack): 3 x K x 2 B
    x H W, on the host. The batch is on the GPU with device cuda, else on the host."""
    w, h = wh
    batch = points_per_batch * (3 * 4 * (model_input**2 + w * h) + 5 * w * h)
    kept = 3 * KEPT_MASKS_PER_LEVEL * 2 * w * h
    if cuda:
        return 2 * checkpoint_bytes + kept, checkpoint_bytes + batch
    return 2 * checkpoint_bytes + kept + batch, 0.0


def sam2_tracks_bytes(
    wh: tuple[int, int],
    *,
    n_frames: int,
    offload_video_to_cpu: bool,
    offload_state_to_cpu: bool,
    model_input: int = 1024,
    checkpoint_bytes: int = 0,
    cuda: bool = False,
) -> tuple[float, float]:
    """(host, GPU) bytes of one track_masks job.

    SAM2's init_state decodes every frame resized to its input size as float32 RGB: n x 3 x 4 B x
    model_input² (12.6 MB a frame at 1024 px), first on the host, then on the GPU unless
    tracks.offload_video_to_cpu keeps them on the host. Its state keeps, per tracked object and frame,
    the memory features (64 x 64 x 64 bfloat16) and the low-resolution mask (256² float32): about 0.79
    MB (TRACKED_OBJECTS objects), on the GPU unless tracks.offload_state_to_cpu. Each propagated frame
    gives every object's logits at the image's size: objects x 4 B x H W. On a CPU all of it is host."""
    w, h = wh
    frames = n_frames * 3 * 4 * model_input**2
    state = n_frames * TRACKED_OBJECTS * (64**3 * 2 + 256**2 * 4)
    per_frame = TRACKED_OBJECTS * 4 * w * h
    if not cuda:
        return 2 * checkpoint_bytes + frames + state + per_frame, 0.0
    host = 2 * checkpoint_bytes + frames + (state if offload_state_to_cpu else 0)
    gpu = checkpoint_bytes + per_frame + (0 if offload_video_to_cpu else frames)
    gpu += 0 if offload_state_to_cpu else state
    return host, gpu


def clip_features_bytes(
    wh: tuple[int, int], *, batch_size: int, crop_size: int, checkpoint_bytes: int = 0, cuda: bool = False
) -> tuple[float, float]:
    """(host, GPU) bytes of one clip_features job.

    A frame's image (H W x 3 B) and its mask index map (H W x 4 B) are on the host with one batch of
    square crops (B x S² x 3 B). On the encoder's side the batch as float32 (B x S² x 3 x 4 B) and, per
    ViT block, the attention matrices of 12 heads over the (S/16)² + 1 tokens (B x 12 x t² x 4 B)."""
    w, h = wh
    tokens = (crop_size // 16) ** 2 + 1
    encoder = batch_size * (crop_size**2 * 3 * 4 + 12 * tokens**2 * 4)
    host = 2 * checkpoint_bytes + w * h * 7 + batch_size * crop_size**2 * 3
    if cuda:
        return host, checkpoint_bytes + encoder
    return host + encoder, 0.0


def stage_bytes(stage: str, config: Mapping[str, Any], wh: tuple[int, int], n_frames: int, *, cuda: bool):
    """(host, GPU) bytes of `stage`'s job on a scene of `n_frames` images of working size `wh`, with the
    real backend as `config` (validated, defaults filled) sets it."""
    section = config[stage]
    if stage == "masks":
        from ccl.masks.backends.sam import AUTO_POINTS_PER_BATCH

        ppb = section["points_per_batch"]
        ppb = AUTO_POINTS_PER_BATCH["cuda" if cuda else "cpu"] if ppb == "auto" else int(ppb)
        side = (section.get("sam_overrides") or {}).get("image_size", 1024)
        return sam_masks_bytes(wh, points_per_batch=ppb, model_input=side,
                               checkpoint_bytes=_file_bytes(section.get("sam_checkpoint")), cuda=cuda)  # fmt: skip
    if stage == "tracks":
        # sam2_overrides are Hydra overrides ("++model.image_size=64"); the official configs' is 1024
        sizes = [o.split("=", 1)[1] for o in section.get("sam2_overrides") or () if "image_size=" in str(o)]
        side = int(sizes[-1]) if sizes else 1024
        return sam2_tracks_bytes(
            wh, n_frames=n_frames, offload_video_to_cpu=bool(section["offload_video_to_cpu"]),
            offload_state_to_cpu=bool(section["offload_state_to_cpu"]), model_input=side,
            checkpoint_bytes=_file_bytes(section.get("sam2_checkpoint")), cuda=cuda,
        )  # fmt: skip
    return clip_features_bytes(wh, batch_size=int(section["batch_size"]), crop_size=int(section["crop_size"]),
                               checkpoint_bytes=_file_bytes(section.get("pretrained")), cuda=cuda)  # fmt: skip


def describe(stage: str, host: float, gpu: float) -> str:
    """One line for a job's log: the estimate and the keys that lower it."""
    where = f"{host / GB:.1f} GB host" + (f", {gpu / GB:.1f} GB GPU" if gpu else "")
    return (
        f"memory: this job is estimated to need about {where} at its peak (ccl.memory); if the log ends "
        f"here or the job was killed (signal 9, SIGKILL), it most likely ran out of memory: lower "
        f"{LOWER_KEYS[stage]}, or raise the rule's memory (--set-resources {RULES[stage]}:mem_mb=N)"
    )


def job_memory_line(stage: str, section: Mapping[str, Any], device: str, cameras) -> str:
    """The line a model job writes to its log when it starts (before its model is built): the estimate
    at its scene's largest working image (`cameras`: the scene's, each at its working size) and the keys
    that lower it. The kernel kills a job out of memory with SIGKILL, which no handler of the job sees:
    Snakemake then prints the failed job's log (profiles' show-failed-logs), and this line is in it."""
    whs = [(c.width, c.height) for c in cameras]
    wh = max(whs, key=lambda x: x[0] * x[1])
    config = {stage: section}
    at = f"{wh[0]} x {wh[1]} px, {len(whs)} frames"
    if str(device).startswith("cuda"):
        host, gpu = stage_bytes(stage, config, wh, len(whs), cuda=True)
    else:
        host, gpu = stage_bytes(stage, config, wh, len(whs), cuda=False)
        if device == "auto":  # torch is not imported yet: both cases
            c_host, c_gpu = stage_bytes(stage, config, wh, len(whs), cuda=True)
            at += f"; on a CUDA device {c_host / GB:.1f} GB host and {c_gpu / GB:.1f} GB GPU, here on a CPU"
    return describe(stage, host, gpu).replace(" at its peak", f" at its peak ({at})")


def memory_warnings(
    config: Mapping[str, Any],
    scenes: Mapping[str, tuple[tuple[int, int], int]],
    *,
    mem_mb: Mapping[str, float],
    gpu_bytes: float | None,
    stages: Mapping[str, frozenset[str]] | None = None,
    source: str = "the config",
) -> list[str]:
    """A warning per (scene, stage) whose estimate exceeds its rule's `mem_mb` (stage -> MB) or, with a
    CUDA device, `gpu_bytes`. `scenes`: name -> (largest working size (w, h), frame count); `stages`:
    name -> the stages the run's targets need of it (None: all)."""
    cuda = str(config.get("device", "auto")).startswith("cuda") and bool(gpu_bytes)
    real = {"masks": "sam", "tracks": "sam2", "features": "open_clip"}
    out = []
    for name, (wh, n_frames) in scenes.items():
        for stage, backend in real.items():
            if config[stage]["backend"] != backend or (stages is not None and stage not in stages[name]):
                continue
            host, gpu = stage_bytes(stage, config, wh, n_frames, cuda=cuda)
            over = []
            if stage in mem_mb and host > mem_mb[stage] * 1e6:
                over.append(f"{host / GB:.1f} GB of host memory, over rule {RULES[stage]}'s mem_mb "
                            f"{mem_mb[stage]:.0f}")  # fmt: skip
            if cuda and gpu_bytes and gpu > gpu_bytes:
                over.append(f"{gpu / GB:.1f} GB of GPU memory, over the GPU's {gpu_bytes / GB:.1f} GB")
            if over:
                out.append(
                    f"ccl-lgs memory ({source}): scene {name!r}, {stage} at {wh[0]} x {wh[1]} px "
                    f"({n_frames} frames) is estimated to need {' and '.join(over)}; the job may be killed "
                    f"(SIGKILL). Lower {LOWER_KEYS[stage]} (e.g. scene_load: {{max_image_side: 1600}}), "
                    f"or raise --set-resources {RULES[stage]}:mem_mb=N"
                )
    return out
