# Scenes: build the embedded synthetic scene, and check every scene (synthetic or the user's) once,
# writing a manifest that every later stage depends on, so bad input stops the run before any work.


rule synthetic_scene:
    output:
        scene_dir=directory("results/{scene}/scene"),
    wildcard_constraints:
        scene=_alternatives(SYNTHETIC_SCENES),  # a real scene's folder is the user's, never built
    log:
        "logs/synthetic_scene/{scene}.log",
    benchmark:
        "benchmarks/synthetic_scene/{scene}.tsv"
    # numpy and OpenCV on one view at a time: one thread
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(30),
    params:
        synthetic=config["synthetic"],
        seed=SHARED_SEED,
    script:
        "../scripts/synthetic_scene.py"


rule scene_manifest:
    input:
        synthetic_scene_input,
        sfm=sfm_inputs,  # poses.smk: a photo folder's model, or a pointless scene's points
        scene_files=scene_input_files,  # a real scene's images and poses: a change replans the scene
    output:
        manifest="results/{scene}/scene.json",
    log:
        "logs/scene_manifest/{scene}.log",
    # decodes every image once, in full, to refuse truncated files before any stage: image decoders
    # release the GIL, so threads help (a local rule: it runs on the submit host, lowered to --cores)
    threads: 4
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        entry=scene_entry,
        source_dir=scene_source_dir,
        scene_load=config["scene_load"],
        points_file=scene_points_file,
    script:
        "../scripts/scene_manifest.py"


ALL_TARGETS.extend(expand(rules.scene_manifest.output.manifest, scene=SCENES))
