# Gaussian fields (paper 3.1, 3.4), once per seed (results/{scene}/seed{seed}/). train_rgb: the colour field of a scene
# (3DGS on the posed images, densified by gsplat's strategy) → results/{scene}/seed{N}/gaussians/
# rgb.safetensors + rgb.metrics.json (held-out PSNR). train_language: per codebook variant and scale, an 8-dim feature per Gaussian and
# the decoder into the codebook's classes, trained on the index maps (masks × prototype index), on the
# colour field's frozen geometry (or jointly with colour when language.joint) → {variant}/{scale}.*
# An interrupted job resumes from its *.partial.safetensors on the next run (deleted on success).
# One thread per job: on a shared or busy CPU, torch's and the tile kernel's threads wait on each other
# (measured 10x slower with 2 threads on a loaded 2-core machine); Snakemake runs jobs side by side
# instead. On a dedicated many-core CPU, raise it: `--set-threads train_rgb=8 train_language=8`.
# Keys and defaults come from ccl.splat.RgbConfig / LanguageConfig (= the schemas'); bad values stop here.
from ccl.config import section
from ccl.splat.config import LanguageConfig, RgbConfig

RGB = section(RgbConfig, config.get("rgb"), where=f"{CONFIG_SOURCE}: rgb")
LANGUAGE = section(
    LanguageConfig, config.get("language"), where=f"{CONFIG_SOURCE}: language"
)


rule train_rgb:
    input:
        manifest=rules.scene_manifest.output.manifest,
    output:
        field="results/{scene}/seed{seed}/gaussians/rgb.safetensors",
        metrics="results/{scene}/seed{seed}/gaussians/rgb.metrics.json",
    log:
        "logs/train_rgb/{scene}_seed{seed}.log",
    benchmark:
        "benchmarks/train_rgb/{scene}_seed{seed}.tsv"
    threads: 1
    resources:
        **model_resources(8000, 240),
    params:
        rgb=config["rgb"],
        scene_load=config["scene_load"],
        seed=run_seed,
        device=config["device"],
        cache_dir=scene_cache_dir,
    script:
        "../scripts/train_rgb.py"


rule train_language:
    input:
        manifest=rules.scene_manifest.output.manifest,
        masks=rules.merge_masks.output.masks,
        codebook=rules.train_codebook.output.codebook,
        # a joint run fits its own geometry: it does not wait for (or rerun with) the colour field
        rgb=[] if LANGUAGE.joint else rules.train_rgb.output.field,
    output:
        field="results/{scene}/seed{seed}/gaussians/{variant}/{scale}.safetensors",
        metrics="results/{scene}/seed{seed}/gaussians/{variant}/{scale}.metrics.json",
    log:
        "logs/train_language/{scene}_seed{seed}_{variant}_{scale}.log",
    benchmark:
        "benchmarks/train_language/{scene}_seed{seed}_{variant}_{scale}.tsv"
    threads: 1
    resources:
        **model_resources(8000, 120),
    params:
        language=config["language"],
        rgb=config["rgb"],
        scene_load=config["scene_load"],
        seed=run_seed,
        device=config["device"],
        cache_dir=scene_cache_dir,
    script:
        "../scripts/train_language.py"


ALL_TARGETS.extend(expand(rules.train_rgb.output.field, scene=SCENES, seed=SEEDS))
ALL_TARGETS.extend(
    expand(
        rules.train_language.output.field,
        scene=SCENES,
        seed=SEEDS,
        variant=VARIANTS,
        scale=SCALES,
    )
)
