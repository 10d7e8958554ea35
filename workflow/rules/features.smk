# Features: a CLIP embedding per mask (OpenCLIP on the masked, square-padded crop, or the simulator on
# synthetic scenes), L2-normalised, float16.
# Keys and defaults come from ccl.features.FeaturesConfig (= the schema's), so a bad value stops here.
from ccl.config import section
from ccl.features.config import FeaturesConfig

FEATURES = section(
    FeaturesConfig, config.get("features"), where=f"{CONFIG_SOURCE}: features"
)


rule clip_features:
    input:
        manifest=rules.scene_manifest.output.manifest,
        masks=rules.merge_masks.output.masks,
    output:
        features="results/{scene}/features/{scale}.h5",
    log:
        "logs/clip_features/{scene}_{scale}.log",
    benchmark:
        "benchmarks/clip_features/{scene}_{scale}.tsv"
    # OpenCLIP's ViT spreads its matrix products over the job's threads (ccl.runlog sets torch's count
    # from them; with no `threads:` torch took every core while Snakemake counted one). 4: several
    # cores for a CPU run, the rest left to the jobs beside it; Snakemake lowers it to --cores and
    # `--set-threads clip_features=16` raises it on a dedicated node. The simulator needs one.
    threads: 4 if FEATURES.backend == "open_clip" else 1
    resources:
        **model_resources(8000, 240, backend_is_real=FEATURES.backend == "open_clip"),
    params:
        features=config["features"],
        scene_load=config["scene_load"],
        seed=shared_seed(FEATURES.backend),
        device=config["device"],
        cache_dir=scene_cache_dir,
    script:
        "../scripts/clip_features.py"


ALL_TARGETS.extend(
    expand(rules.clip_features.output.features, scene=SCENES, scale=SCALES)
)
