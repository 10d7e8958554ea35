# Tracks: the first frame's masks propagated through every frame (SAM2 video predictor, or the
# simulator on synthetic scenes); every mask of every frame gets a track label (-1 unmatched).
# Keys and defaults come from ccl.tracks.TracksConfig (= the schema's), so a bad value stops here.
from ccl.config import section
from ccl.tracks.config import TracksConfig

TRACKS = section(TracksConfig, config.get("tracks"), where=f"{CONFIG_SOURCE}: tracks")


rule track_masks:
    input:
        manifest=rules.scene_manifest.output.manifest,
        masks=rules.merge_masks.output.masks,
    output:
        tracks="results/{scene}/tracks/{scale}.h5",
    log:
        "logs/track_masks/{scene}_{scale}.log",
    benchmark:
        "benchmarks/track_masks/{scene}_{scale}.tsv"
    # SAM2's video predictor spreads its matrix products over the job's threads (ccl.runlog sets torch's count
    # from them; with no `threads:` torch took every core while Snakemake counted one). 4: several
    # cores for a CPU run, the rest left to the jobs beside it; Snakemake lowers it to --cores and
    # `--set-threads track_masks=16` raises it on a dedicated node. The simulator needs one.
    threads: 4 if TRACKS.backend == "sam2" else 1
    resources:
        **model_resources(16000, 600, backend_is_real=TRACKS.backend == "sam2"),
    params:
        tracks=config["tracks"],
        scene_load=config["scene_load"],
        seed=shared_seed(TRACKS.backend),
        device=config["device"],
        cache_dir=scene_cache_dir,
    script:
        "../scripts/track_masks.py"


ALL_TARGETS.extend(expand(rules.track_masks.output.tracks, scene=SCENES, scale=SCALES))
