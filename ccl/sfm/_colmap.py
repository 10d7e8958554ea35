"""The pycolmap calls shared by pose recovery and triangulation: SIFT into a database, one camera per
group of photos, matching with the chosen pairing, and per-image counts for messages.

pycolmap is imported inside each function (`import ccl` stays light); it runs on the CPU here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ccl.runlog import announce, progress

log = logging.getLogger(__name__)

EXTRACT_BATCH = 16  # photos per extraction call: the progress line's step
RANDOM_SEED = 0  # RANSAC's draws in verification and mapping: a rerun makes the same model


def quiet_pycolmap() -> None:
    """COLMAP's own log (glog) at warnings and above; ccl logs the steps and their results."""
    import pycolmap

    pycolmap.logging.minloglevel = pycolmap.logging.WARNING


def extract(
    database: Path,
    image_dir: Path,
    names: Sequence[str],
    groups: Sequence[Sequence[int]],
    *,
    camera_model: str,
    max_image_size: int,
    max_num_features: int,
    dsp_sift: bool,
    threads: int,
    camera_params: Sequence[str] | None = None,
) -> None:
    """SIFT of `names` (relative to `image_dir`) into `database`: one camera per group of indices, its
    model `camera_model`, its parameters `camera_params[g]` (COLMAP's comma-separated order) when known
    (triangulation), else COLMAP's guess from EXIF or the image size, refined by the mapper.

    The extraction threads write photos in the order they finish, and the mapper's choices follow the
    database's ids; so SIFT goes to a scratch database, copied into `database` in the order of `names`
    (ids 1, 2, … by name): a rerun makes the same model."""
    import pycolmap

    ext = pycolmap.FeatureExtractionOptions()
    ext.num_threads = threads
    ext.max_image_size = max_image_size
    ext.sift.max_num_features = max_num_features
    # DSP-SIFT and affine-shaped keypoints (COLMAP's CPU-only options): descriptors that tell look-alike
    # patches apart, against the wrong pairs repeated texture makes (ccl.sfm.config)
    ext.sift.domain_size_pooling = dsp_sift
    ext.sift.estimate_affine_shape = dsp_sift
    batches = []
    for g, members in enumerate(groups):
        for start in range(0, len(members), EXTRACT_BATCH):
            batches.append((g, [names[i] for i in members[start : start + EXTRACT_BATCH]]))
    scratch = database.with_name(database.name + ".unordered")
    camera_of_group: dict[int, int] = {}
    announce(log, f"SIFT on {len(names)} photos ({threads} thread(s))")
    for g, batch in progress(
        batches, desc="SIFT", unit="photo", total=len(names), weight=lambda b: len(b[1])
    ):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = camera_model
        if camera_params is not None:
            reader.camera_params = camera_params[g]
        if g in camera_of_group:  # a later batch of the group: the group's camera
            reader.existing_camera_id = camera_of_group[g]
        pycolmap.extract_features(
            scratch, image_dir, image_names=batch, camera_mode=pycolmap.CameraMode.SINGLE,
            reader_options=reader, extraction_options=ext, device=pycolmap.Device.auto,
        )  # fmt: skip
        if g not in camera_of_group:
            with pycolmap.Database.open(scratch) as db:
                camera_of_group[g] = db.read_image_with_name(batch[0]).camera_id
    _copy_in_name_order(scratch, database, names)
    scratch.unlink()
    log.info("SIFT: %d photos, %d camera(s)", len(names), len(groups))


def _copy_in_name_order(source: Path, target: Path, names: Sequence[str]) -> None:
    """`source`'s cameras, photos and features into a new database `target`: cameras numbered by their
    first photo, photos by their place in `names`, each with its own rig and frame (COLMAP's layout for
    photos that are not a rig). GPS pose priors from EXIF are not carried: the mapper runs here
    without them (`use_prior_position` off)."""
    import pycolmap

    with pycolmap.Database.open(source) as src, pycolmap.Database.open(target) as dst:
        images = {im.name: im for im in src.read_all_images()}
        cameras = {c.camera_id: c for c in src.read_all_cameras()}
        new_camera: dict[int, int] = {}  # source camera id -> target camera id
        rig_of_camera: dict[int, int] = {}  # target camera id -> its rig
        for name in names:
            old = images[name]
            if old.camera_id not in new_camera:
                camera = cameras[old.camera_id]
                camera.camera_id = dst.write_camera(camera)
                rig = pycolmap.Rig()
                rig.add_ref_sensor(camera.sensor_id)
                new_camera[old.camera_id] = camera.camera_id
                rig_of_camera[camera.camera_id] = dst.write_rig(rig)
            image = pycolmap.Image(name=name, camera_id=new_camera[old.camera_id])
            image.image_id = dst.write_image(image)
            frame = pycolmap.Frame()
            frame.rig_id = rig_of_camera[image.camera_id]
            frame.add_data_id(image.data_id)
            dst.write_frame(frame)
            dst.write_keypoints(image.image_id, src.read_keypoints(old.image_id))
            dst.write_descriptors(image.image_id, src.read_descriptors(old.image_id))


def match(
    database: Path, *, matcher: str, threads: int, overlap: int, vocab_tree_path: str, min_inliers: int
) -> None:
    """Match the database's features over the pairs `matcher` names, with geometric verification."""
    import pycolmap

    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = threads
    verify = pycolmap.TwoViewGeometryOptions()
    verify.ransac.random_seed = RANDOM_SEED  # COLMAP's default draws anew each run
    verify.min_num_inliers = min_inliers
    announce(log, f"matching the photos ({matcher}; one step, no time estimate)")
    if matcher == "exhaustive":
        # one call: matching the pairs in parts through match_image_pairs (a progress step per part) made
        # reruns differ (tests/sfm/test_sfm_textured_room.py), so the model would not be reproducible
        pycolmap.match_exhaustive(database, matching_options=opts, verification_options=verify,
                                  device=pycolmap.Device.auto)  # fmt: skip
        return
    if matcher == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = overlap
        if vocab_tree_path:  # loop closure: a walk that comes back to where it started
            pairing.loop_detection = True
            pairing.vocab_tree_path = vocab_tree_path
        pycolmap.match_sequential(database, matching_options=opts, pairing_options=pairing,
                                  verification_options=verify, device=pycolmap.Device.auto)  # fmt: skip
    elif matcher == "vocab_tree":
        pairing = pycolmap.VocabTreePairingOptions()
        pairing.vocab_tree_path = vocab_tree_path
        pycolmap.match_vocabtree(database, matching_options=opts, pairing_options=pairing,
                                 verification_options=verify, device=pycolmap.Device.auto)  # fmt: skip
    else:
        raise ValueError(f"matcher {matcher!r}: expected exhaustive, sequential or vocab_tree")


@dataclass(frozen=True)
class ImageCounts:
    keypoints: int  # SIFT features found
    verified_pairs: int  # photos it shares a geometrically verified pair with
    inliers: int  # its verified matches, over all those pairs


def image_counts(database: Path) -> dict[str, ImageCounts]:
    """Per image name: features, verified partners and matches (what a message says of a lost photo)."""
    import pycolmap

    with pycolmap.Database.open(database) as db:
        images = {im.image_id: im.name for im in db.read_all_images()}
        keypoints = {iid: db.num_keypoints_for_image(iid) for iid in images}
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
    partners = dict.fromkeys(images, 0)
    matched = dict.fromkeys(images, 0)
    for pair_id, n in zip(pair_ids, inliers, strict=True):
        if n <= 0:
            continue
        for iid in pycolmap.pair_id_to_image_pair(pair_id):
            if iid in partners:
                partners[iid] += 1
                matched[iid] += int(n)
    return {name: ImageCounts(keypoints[i], partners[i], matched[i]) for i, name in images.items()}


def incremental_mapping(database: Path, image_dir: Path, output: Path, *, options, n_images: int) -> dict:
    """pycolmap's incremental mapping with a progress line per registered image (of `n_images`).

    The clock of the time-left estimate starts at the first image registered after the initial pair
    (the pair's 2 images and that one are the meter's `initial`): finding and registering the pair (two-
    view geometries tried, a first bundle adjustment) and that first image (3-4x the next ones') are
    one-off costs, and counted in the per-image rate they made the estimate after a quarter of the images
    2-3x too long (bench.sfm_progress). Another model's pair (photos the first could not take) counts its
    2 images. The final bundle adjustment after the last image is in the stage's time, not its units."""
    import pycolmap

    announce(log, f"mapping: choosing an initial pair, then registering up to {n_images} photos")
    done_now = [0]  # images registered since the meter last counted (what the next step counts)
    state: dict = {"meter": None, "registered": 0, "stop": False}

    def ticks():
        while not state["stop"]:
            yield done_now

    def count(images: int) -> None:
        if state["meter"] is None:  # not started: the images are its initial ones
            state["registered"] += images
            return
        done_now[0] = images
        next(state["meter"], None)
        done_now[0] = 0

    def next_image() -> None:
        if state["meter"] is None:  # the first image after the pair: the clock starts now
            state["meter"] = progress(ticks(), desc="mapping", unit="registered image", total=n_images,
                                      initial=state["registered"] + 1, weight=lambda d: d[0])  # fmt: skip
            next(state["meter"])
        else:
            count(1)

    try:
        models = pycolmap.incremental_mapping(
            database, image_dir, output, options=options, initial_image_pair_callback=lambda: count(2),
            next_image_callback=next_image,
        )  # fmt: skip
        if state["meter"] is not None:  # the last line: how many, and the stage's time
            state["stop"] = True
            next(state["meter"], None)
        return models
    finally:
        if state["meter"] is not None:
            state["meter"].close()
