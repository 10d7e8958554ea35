# Structure from motion (ccl.sfm, pycolmap on the CPU). poses: a `source: images` folder of photos →
# results/{scene}/sfm/model/ (undistorted PINHOLE images + COLMAP model, read as a `colmap` scene) and
# sfm/poses.json (registered / total, reprojection error, track length, points). triangulate_points:
# a scene with poses but no points (transforms.json without ply_file_path, COLMAP without points3D) →
# sfm/points3D.ply, triangulated with its poses fixed, which the manifest names and train_rgb starts
# from; sfm/points.json says how many and, when none, why. Which scenes need which: PHOTO_SCENES and
# POINTLESS_SCENES (common.smk). A photo folder that already holds a COLMAP model (images/ + the
# scene_load model) is used as it is: no SfM runs, as this says at parse time and the manifest's log.
import sys

from ccl.sfm.plan import colmap_photo_scenes

if workflow.is_main_process:
    for _name in colmap_photo_scenes(config):
        print(
            f"scene {_name}: its folder holds a COLMAP scene already (images/ and "
            f"{config['scene_load']['colmap_model']}): used as it is, no structure from motion runs",
            file=sys.stderr,
        )


rule poses:
    input:
        photos=scene_photo_files,
    output:
        model=directory("results/{scene}/sfm/model"),
        report="results/{scene}/sfm/poses.json",
    wildcard_constraints:
        scene=_alternatives(PHOTO_SCENES),
    log:
        "logs/poses/{scene}.log",
    benchmark:
        "benchmarks/poses/{scene}.tsv"
    # SIFT, matching and bundle adjustment use every thread they are given (pycolmap's pools)
    threads: 4
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(120),
        gpu=0,  # pycolmap's SIFT and mapper run on the CPU here
    params:
        photo_dir=lambda wildcards: scene_entry(wildcards)["path"],
        sfm=config["sfm"],
        colmap_model=config["scene_load"]["colmap_model"],
    script:
        "../scripts/poses.py"


rule triangulate_points:
    input:
        poses=scene_pose_files,
    output:
        points="results/{scene}/sfm/points3D.ply",
        report="results/{scene}/sfm/points.json",
    wildcard_constraints:
        scene=_alternatives(POINTLESS_SCENES),
    log:
        "logs/triangulate_points/{scene}.log",
    benchmark:
        "benchmarks/triangulate_points/{scene}.tsv"
    threads: 4
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(60),
        gpu=0,  # pycolmap's SIFT and triangulation run on the CPU here
    params:
        entry=scene_entry,
        source_dir=scene_source_dir,
        scene_load=config["scene_load"],
        sfm=config["sfm"],
        cache_dir=scene_cache_dir,
    script:
        "../scripts/triangulate_points.py"
