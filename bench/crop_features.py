"""What the simulated features give the codebook to fix: cross-view consistency within tracks, per mode.

On the scene, merged masks and tracks of a finished `bench.ablation` run (WORKDIR), the features of
every scale are computed with `features.sim_mode` anchor and crop (the run's other features settings).
Per scale and mode it reports, over the masks of tracks seen in at least two frames:
- `within_track_cosine`: mean cosine of a mask's feature to its track's mean direction (1 = every view
  of the track gives one feature; what L_pull pulls together);
- `between_track_cosine`: mean cosine between the mean directions of two tracks (what L_push pushes);
- `own_category_top1`: share of whole-level masks whose nearest category text is their object's.
Writes bench/out/crop_features_<CASE>.json.

Run: python -m bench.crop_features WORKDIR CASE
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out"


def consistency(features, tracks, masks_reader, masks_path, scene, gt, text) -> dict:
    from ccl.io.masks_h5 import read_frame_masks
    from ccl.synthetic.gt import majority_id

    feats, labels, top1 = [], [], []
    cat_of = {o["id"]: o["category_id"] for o in gt.objects}
    for cam in scene.cameras:
        x = features.frames[cam.name].astype(np.float64)
        feats.append(x)
        labels.append(tracks.frames[cam.name].labels)
        fm = read_frame_masks(masks_reader, cam, masks_path)
        whole = gt.frame(cam.name).whole_id
        for i in np.flatnonzero(fm.level == 2):
            obj = majority_id(whole, fm.segmentation == i)
            if obj >= 0:
                top1.append(int((x[i] @ text.T).argmax() == cat_of[obj]))
    x, lab = np.concatenate(feats), np.concatenate(labels)
    frames = np.concatenate([np.full(len(f), t) for t, f in enumerate(feats)])
    within, means = [], []
    for t in np.unique(lab[lab >= 0]):
        sel = lab == t
        if len(np.unique(frames[sel])) < 2:
            continue
        mean = x[sel].mean(axis=0)
        mean /= np.linalg.norm(mean)
        within.extend((x[sel] @ mean).tolist())
        means.append(mean)
    m = np.stack(means)
    between = (m @ m.T)[np.triu_indices(len(m), 1)]
    return {"tracks": len(means), "masks": len(within), "within_track_cosine": round(float(np.mean(within)), 4),
            "between_track_cosine": round(float(np.mean(between)), 4),
            "own_category_top1": round(float(np.mean(top1)), 4) if top1 else None}  # fmt: skip


def main(workdir: str, case: str) -> dict:
    from ccl.config import load_config, section
    from ccl.features import FeaturesConfig, encode_text, extract_features
    from ccl.io.features_h5 import read_features
    from ccl.io.masks_h5 import open_masks
    from ccl.io.tracks_h5 import read_tracks
    from ccl.scene import SceneLoadConfig, load_scene
    from ccl.synthetic.gt import GroundTruth, gt_path

    work = Path(workdir)
    config = load_config(work / "config.yaml", overrides=_case_overrides(work, case))
    base = section(FeaturesConfig, config["features"])
    res = work / "results" / "synthetic"
    scene = load_scene(res / "scene", source="synthetic", cfg=SceneLoadConfig(), name="synthetic")
    gt = GroundTruth(gt_path(scene), scene.frame_names)
    out = {"case": case, "workdir": str(work), "scales": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in ("sp", "wp", "all"):
            if not (res / "masks" / f"{scale}.h5").is_file():
                continue
            tracks = read_tracks(res / "tracks" / f"{scale}.h5")
            out["scales"][scale] = {}
            for mode in ("anchor", "crop"):
                cfg = dataclasses.replace(base, sim_mode=mode)
                path = extract_features(scene, res / "masks" / f"{scale}.h5", cfg=cfg,
                                        out_path=Path(tmp) / f"{scale}_{mode}.h5", seed=0)  # fmt: skip
                text = encode_text(gt.categories, cfg=cfg).astype(np.float64)
                masks = res / "masks" / f"{scale}.h5"
                with open_masks(masks) as reader:
                    out["scales"][scale][mode] = consistency(
                        read_features(path), tracks, reader, masks, scene, gt, text
                    )
    gt.close()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"crop_features_{case}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


def _case_overrides(work: Path, case: str) -> dict:
    import yaml

    return yaml.safe_load((work / f"hard_{case}.yaml").read_text())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
