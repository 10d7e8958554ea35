"""The two mask layouts (docs/contracts.md, "Masks") and their typed forms, defined once.

`results/{scene}/masks/raw.h5` (kind ``masks_raw``): SAM's three levels per image, kept apart,
overlapping allowed; masks bit-packed (``np.packbits`` of the flattened boolean mask).
`results/{scene}/masks/{scale}.h5` (kind ``masks``): one non-overlapping segmentation map per image
(int32, −1 = no mask) plus per-mask datasets.

Both are written by consuming an iterator of frames, so a stage holds one frame at a time, and both
are stamped complete only when every frame is in (`ccl.io.write_h5`).

Boxes are SAM's: ``[x0, y0, x1, y1]`` with x1, y1 the last column / row that holds a pixel of the
mask (inclusive), ``[0, 0, 0, 0]`` for an empty mask; crop with ``img[y0:y1 + 1, x0:x1 + 1]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.io.h5 import frame_names_of, open_h5_for_read, put_array, read_json_attr, write_h5

LEVELS: tuple[str, ...] = ("subpart", "part", "whole")  # SAM's multimask outputs 0, 1, 2
RAW_KIND, RAW_FORMAT_VERSION = "masks_raw", 1
MASKS_KIND, MASKS_FORMAT_VERSION = "masks", 1


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """[M, H, W] bool → [M, 4] float32 inclusive xyxy boxes (SAM's `batched_mask_to_box`), zeros if empty."""
    m = masks.shape[0]
    boxes = np.zeros((m, 4), np.float32)
    if m == 0:
        return boxes
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # [M, H], [M, W]
    nonempty = rows.any(axis=1)
    h, w = masks.shape[1:]
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = w - 1 - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = h - 1 - rows[:, ::-1].argmax(axis=1)
    boxes[~nonempty] = 0
    return boxes


@dataclass(frozen=True, eq=False)
class LevelMasks:
    """The masks of one SAM level of one image (overlapping allowed)."""

    masks: np.ndarray  # [M, H, W] bool
    pred_iou: np.ndarray  # [M] float32, SAM's predicted IoU
    stability: np.ndarray  # [M] float32, SAM's stability score
    area: np.ndarray  # [M] int64, pixels in the mask
    boxes_xyxy: np.ndarray  # [M, 4] float32, inclusive pixel coordinates

    def __post_init__(self) -> None:
        m = self.masks.shape[0]
        assert self.masks.ndim == 3 and self.masks.dtype == np.bool_, (self.masks.shape, self.masks.dtype)
        for name, dtype, shape in (
            ("pred_iou", np.float32, (m,)),
            ("stability", np.float32, (m,)),
            ("area", np.int64, (m,)),
            ("boxes_xyxy", np.float32, (m, 4)),
        ):
            a = getattr(self, name)
            assert a.dtype == dtype and a.shape == shape, (name, a.dtype, a.shape)

    @classmethod
    def from_masks(cls, masks: np.ndarray, pred_iou: np.ndarray, stability: np.ndarray) -> LevelMasks:
        """Build with `area` and `boxes_xyxy` computed from the masks."""
        masks = np.asarray(masks, dtype=bool)
        h, w = masks.shape[1:]
        return cls(
            masks=masks,
            pred_iou=np.asarray(pred_iou, np.float32).reshape(-1),
            stability=np.asarray(stability, np.float32).reshape(-1),
            area=masks.reshape(masks.shape[0], h * w).sum(axis=1, dtype=np.int64),
            boxes_xyxy=boxes_from_masks(masks),
        )

    @classmethod
    def empty(cls, height: int, width: int) -> LevelMasks:
        z = np.zeros(0, np.float32)
        return cls.from_masks(np.zeros((0, height, width), bool), z, z)

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def score(
        self,
    ) -> np.ndarray:  # [M] float32, pred_iou × stability (the ranking of LangSplat and the paper)
        return (self.pred_iou * self.stability).astype(np.float32)

    def select(self, keep: np.ndarray) -> LevelMasks:
        """The subset `keep` (bool [M] or indices), in the order given."""
        return LevelMasks(
            masks=self.masks[keep],
            pred_iou=self.pred_iou[keep],
            stability=self.stability[keep],
            area=self.area[keep],
            boxes_xyxy=self.boxes_xyxy[keep],
        )


@dataclass(frozen=True, eq=False)
class RawFrameMasks:
    """One image of raw.h5: the three levels, kept apart."""

    name: str  # frame name (image file stem)
    subpart: LevelMasks
    part: LevelMasks
    whole: LevelMasks

    def __post_init__(self) -> None:
        shapes = {lv.masks.shape[1:] for lv in self.levels()}
        assert len(shapes) == 1, f"{self.name}: levels of different image sizes {shapes}"

    def levels(self) -> tuple[LevelMasks, LevelMasks, LevelMasks]:
        return (self.subpart, self.part, self.whole)

    def level(self, name: str) -> LevelMasks:
        if name not in LEVELS:
            raise KeyError(f"unknown level {name!r}; levels are {LEVELS}")
        return getattr(self, name)

    @property
    def shape_hw(self) -> tuple[int, int]:
        h, w = self.subpart.masks.shape[1:]
        return int(h), int(w)

    @property
    def n_masks(self) -> int:
        return sum(len(lv) for lv in self.levels())


@dataclass(frozen=True, eq=False)
class FrameMasks:
    """One image of {scale}.h5: non-overlapping masks as a segmentation map. Index i owns ≥ 1 pixel."""

    name: str  # frame name (image file stem)
    segmentation: np.ndarray  # [H, W] int32, index of the mask covering the pixel, -1 = none
    score: np.ndarray  # [M] float32, pred_iou × stability
    pred_iou: np.ndarray  # [M] float32
    stability: np.ndarray  # [M] float32
    area: np.ndarray  # [M] int64, pixels with segmentation == i (after merging)
    boxes_xyxy: np.ndarray  # [M, 4] float32, inclusive box of the pixels with segmentation == i
    level: np.ndarray  # [M] int8, 0 subpart, 1 part, 2 whole

    def __post_init__(self) -> None:
        m = self.score.shape[0]
        assert self.segmentation.ndim == 2 and self.segmentation.dtype == np.int32
        for name, dtype, shape in (
            ("score", np.float32, (m,)),
            ("pred_iou", np.float32, (m,)),
            ("stability", np.float32, (m,)),
            ("area", np.int64, (m,)),
            ("boxes_xyxy", np.float32, (m, 4)),
            ("level", np.int8, (m,)),
        ):
            a = getattr(self, name)
            assert a.dtype == dtype and a.shape == shape, (name, a.dtype, a.shape)

    @property
    def n_masks(self) -> int:
        return int(self.score.shape[0])

    @property
    def shape_hw(self) -> tuple[int, int]:
        h, w = self.segmentation.shape
        return int(h), int(w)

    def mask(self, i: int) -> np.ndarray:
        """[H, W] bool, the pixels mask i owns."""
        return self.segmentation == i

    def masks(self) -> np.ndarray:
        """[M, H, W] bool, every mask (memory M·H·W bytes: prefer `segmentation` where possible)."""
        return self.segmentation[None] == np.arange(self.n_masks, dtype=np.int32)[:, None, None]

    @classmethod
    def empty(cls, name: str, height: int, width: int) -> FrameMasks:
        z = np.zeros(0, np.float32)
        return cls(
            name=name,
            segmentation=np.full((height, width), -1, np.int32),
            score=z,
            pred_iou=z.copy(),
            stability=z.copy(),
            area=np.zeros(0, np.int64),
            boxes_xyxy=np.zeros((0, 4), np.float32),
            level=np.zeros(0, np.int8),
        )


# ----------------------------------------------------------------------------------------- writing


def write_raw_masks(
    path: str | os.PathLike,
    frames: Iterable[RawFrameMasks],
    *,
    frame_names: list[str],
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> Path:
    """Write raw.h5 from `frames` (consumed one at a time, in `frame_names` order), atomically."""
    with write_h5(
        path,
        kind=RAW_KIND,
        format_version=RAW_FORMAT_VERSION,
        params=params,
        model=model,
        inputs=inputs,
        frame_names=frame_names,
    ) as f:
        f.attrs["levels"] = list(LEVELS)
        n = 0
        for n, fr in enumerate(frames, start=1):
            assert n <= len(frame_names) and fr.name == frame_names[n - 1], (fr.name, n)
            g = f.create_group(fr.name)
            h, w = fr.shape_hw
            g.attrs["shape_hw"] = (h, w)
            for name in LEVELS:
                lv = fr.level(name)
                lg = g.create_group(name)
                packed = np.packbits(lv.masks.reshape(len(lv), h * w), axis=1)
                ds = put_array(lg, "masks_packed", packed)
                ds.attrs["shape_hw"] = (h, w)
                put_array(lg, "pred_iou", lv.pred_iou)
                put_array(lg, "stability", lv.stability)
                put_array(lg, "area", lv.area)
                put_array(lg, "boxes_xyxy", lv.boxes_xyxy)
        assert n == len(frame_names), f"wrote {n} frames of {len(frame_names)}"
    return Path(path)


def write_masks(
    path: str | os.PathLike,
    frames: Iterable[FrameMasks],
    *,
    frame_names: list[str],
    scale: str,
    params: Mapping[str, Any],
    model: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> Path:
    """Write {scale}.h5 from `frames` (consumed one at a time, in `frame_names` order), atomically."""
    with write_h5(
        path,
        kind=MASKS_KIND,
        format_version=MASKS_FORMAT_VERSION,
        params=params,
        model=model,
        inputs=inputs,
        frame_names=frame_names,
    ) as f:
        f.attrs["scale"] = scale
        n = 0
        for n, fr in enumerate(frames, start=1):
            assert n <= len(frame_names) and fr.name == frame_names[n - 1], (fr.name, n)
            g = f.create_group(fr.name)
            put_array(g, "segmentation", fr.segmentation)
            for name in ("score", "pred_iou", "stability", "area", "boxes_xyxy", "level"):
                put_array(g, name, getattr(fr, name))
        assert n == len(frame_names), f"wrote {n} frames of {len(frame_names)}"
    return Path(path)


# ----------------------------------------------------------------------------------------- reading


class _Reader:
    """An open masks file: `frame_names`, `params`, `model`, `inputs`; `read(name)`; iterate frames."""

    kind: str
    format_versions: tuple[int, ...]

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = open_h5_for_read(self.path, kind=self.kind, format_versions=self.format_versions)
        self.frame_names: list[str] = frame_names_of(self._f)
        self.params: dict[str, Any] = read_json_attr(self._f, "params", {})
        self.model: dict[str, Any] = read_json_attr(self._f, "model", {})
        self.inputs: dict[str, Any] = read_json_attr(self._f, "inputs", {})

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __len__(self) -> int:
        return len(self.frame_names)

    def __iter__(self) -> Iterator[Any]:
        for name in self.frame_names:
            yield self.read(name)

    def _group(self, name: str) -> Any:
        if name not in self._f:
            raise KeyError(f"{self.path}: no frame {name!r}; frames: {self.frame_names[:5]}...")
        return self._f[name]

    def read(self, name: str) -> Any:
        raise NotImplementedError


class RawMasksReader(_Reader):
    kind, format_versions = RAW_KIND, (RAW_FORMAT_VERSION,)

    def read(self, name: str) -> RawFrameMasks:
        g = self._group(name)
        h, w = (int(x) for x in g.attrs["shape_hw"])
        levels = {}
        for lv in LEVELS:
            lg = g[lv]
            packed = lg["masks_packed"][()]
            m = packed.shape[0]
            masks = np.unpackbits(packed, axis=1, count=h * w).astype(bool).reshape(m, h, w)
            levels[lv] = LevelMasks(
                masks=masks,
                pred_iou=lg["pred_iou"][()].astype(np.float32),
                stability=lg["stability"][()].astype(np.float32),
                area=lg["area"][()].astype(np.int64),
                boxes_xyxy=lg["boxes_xyxy"][()].astype(np.float32).reshape(m, 4),
            )
        return RawFrameMasks(name=name, **levels)


class MasksReader(_Reader):
    kind, format_versions = MASKS_KIND, (MASKS_FORMAT_VERSION,)

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self.scale: str = str(self._f.attrs.get("scale", ""))

    def read(self, name: str) -> FrameMasks:
        g = self._group(name)
        m = g["score"].shape[0]
        return FrameMasks(
            name=name,
            segmentation=g["segmentation"][()].astype(np.int32),
            score=g["score"][()].astype(np.float32),
            pred_iou=g["pred_iou"][()].astype(np.float32),
            stability=g["stability"][()].astype(np.float32),
            area=g["area"][()].astype(np.int64),
            boxes_xyxy=g["boxes_xyxy"][()].astype(np.float32).reshape(m, 4),
            level=g["level"][()].astype(np.int8),
        )


def open_raw_masks(path: str | os.PathLike) -> RawMasksReader:
    """Open raw.h5 for reading (refuses a file of another kind, version, or left incomplete)."""
    return RawMasksReader(path)


def open_masks(path: str | os.PathLike) -> MasksReader:
    """Open a merged {scale}.h5 for reading (refuses a file of another kind, version, or left incomplete).

    ``with open_masks(p) as r: for fm in r: ...`` yields `FrameMasks` in frame order.
    """
    return MasksReader(path)


def check_masks_match_scene(reader: MasksReader, scene: Any, masks_path: str | os.PathLike) -> None:
    """Refuse a masks file made for another scene (other frames; `read_frame_masks` checks the sizes)."""
    if list(reader.frame_names) != list(scene.frame_names):
        raise ValueError(
            f"{masks_path}: its frames {reader.frame_names[:3]}… ({len(reader.frame_names)}) are not scene "
            f"{scene.name!r}'s {scene.frame_names[:3]}… ({len(scene.frame_names)}): a masks file of another "
            "scene; remake this scene's masks: `snakemake --forcerun sam_masks` (the file is replaced, never read)"
        )


def read_frame_masks(reader: MasksReader, camera: Any, masks_path: str | os.PathLike) -> FrameMasks:
    """`reader.read(camera.name)`, refusing a frame whose size is not the camera's."""
    fm = reader.read(camera.name)
    if fm.shape_hw != (camera.height, camera.width):
        raise ValueError(
            f"{masks_path}: frame {camera.name} is {fm.shape_hw[1]}x{fm.shape_hw[0]}, the scene's image "
            f"{camera.width}x{camera.height}: a masks file of another scene or another scene_load.downscale; "
            "remake this scene's masks: `snakemake --forcerun sam_masks`"
        )
    return fm
