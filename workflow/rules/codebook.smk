# Codebook: N prototypes learned from every mask's CLIP feature with the track labels (eq. 4-8), once
# per loss variant (config `variants`: full, base = L_max only, pull, push); every mask gets the index
# of its nearest prototype. Downstream stages run once per variant through the {variant} wildcard, and
# this one and they once per seed of config `seeds` (the {seed} wildcard: results/{scene}/seed{seed}/).
# Keys and defaults come from ccl.codebook.CodebookConfig (= the schema's), so a bad value stops here.
from ccl.codebook.config import CodebookConfig
from ccl.config import section

CODEBOOK = section(
    CodebookConfig, config.get("codebook"), where=f"{CONFIG_SOURCE}: codebook"
)


rule train_codebook:
    input:
        manifest=rules.scene_manifest.output.manifest,
        features=rules.clip_features.output.features,
        tracks=rules.track_masks.output.tracks,
    output:
        codebook="results/{scene}/seed{seed}/codebook/{variant}/{scale}.h5",
        diagnostics="results/{scene}/seed{seed}/codebook/{variant}/{scale}.diagnostics.json",
        loss_plot="results/{scene}/seed{seed}/codebook/{variant}/{scale}.loss.png",
    log:
        "logs/train_codebook/{scene}_seed{seed}_{variant}_{scale}.log",
    benchmark:
        "benchmarks/train_codebook/{scene}_seed{seed}_{variant}_{scale}.tsv"
    # small [M, N] products per step: one thread is as fast and bit-exact; jobs run side by side
    threads: 1
    resources:
        mem_mb=per_attempt(4000),  # grows with --retries, as every job the Slurm profile retries
        runtime=per_attempt(60),
        gpu=GPU_JOB,
    params:
        codebook=config["codebook"],
        seed=run_seed,
        device=config["device"],
    script:
        "../scripts/train_codebook.py"


ALL_TARGETS.extend(
    expand(
        rules.train_codebook.output.codebook,
        scene=SCENES,
        seed=SEEDS,
        variant=VARIANTS,
        scale=SCALES,
    )
)
