# Masks: SAM's three levels per image (raw.h5, the expensive step), then each merged scale ({scale}.h5).
# The generation rule gets every masks key but the merge-only ones, so retuning a merge setting
# reruns only merge_masks, never SAM.
# Keys and defaults come from ccl.masks.MasksConfig (= the schema's), so a bad value stops here.
from ccl.config import section
from ccl.masks.config import MasksConfig

MASKS = section(MasksConfig, config.get("masks"), where=f"{CONFIG_SOURCE}: masks")


rule sam_masks:
    input:
        manifest=rules.scene_manifest.output.manifest,
    output:
        raw="results/{scene}/masks/raw.h5",
    log:
        "logs/sam_masks/{scene}.log",
    benchmark:
        "benchmarks/sam_masks/{scene}.tsv"
    # SAM's ViT spreads its matrix products over the job's threads (ccl.runlog sets torch's count
    # from them; with no `threads:` torch took every core while Snakemake counted one). 4: several
    # cores for a CPU run, the rest left to the jobs beside it; Snakemake lowers it to --cores and
    # `--set-threads sam_masks=16` raises it on a dedicated node. The simulator needs one.
    threads: 4 if MASKS.backend == "sam" else 1
    resources:
        **model_resources(16000, 600, backend_is_real=MASKS.backend == "sam"),
    params:
        masks=MASKS.generation_params(),
        scene_load=config["scene_load"],
        seed=shared_seed(MASKS.backend),
        device=config["device"],
        cache_dir=scene_cache_dir,
    script:
        "../scripts/sam_masks.py"


rule merge_masks:
    input:
        manifest=rules.scene_manifest.output.manifest,
        raw=rules.sam_masks.output.raw,
    output:
        masks="results/{scene}/masks/{scale}.h5",
    log:
        "logs/merge_masks/{scene}_{scale}.log",
    benchmark:
        "benchmarks/merge_masks/{scene}_{scale}.tsv"
    # numpy on one mask stack at a time: one thread
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    params:
        masks=MASKS.merge_params(),
    script:
        "../scripts/merge_masks.py"


ALL_TARGETS.extend(expand(rules.merge_masks.output.masks, scene=SCENES, scale=SCALES))
