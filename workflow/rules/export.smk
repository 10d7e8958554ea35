# Export: a synthetic scene written in a benchmark's release layout (COLMAP model, JPEG images and the
# benchmark's labels), so the whole DAG can run on it with `source: colmap` as on the real benchmarks.
# Made only when asked for: `snakemake results/synthetic/export/lerf_ovs` (or .../3dovs); point a
# config's data_root at that folder (export.json in it gives the scene's entry).
from ccl.synthetic.export import synthetic_only


rule export_scene:
    input:
        # another scene is refused when the DAG is built, before a synthetic scene is made under its name
        scene_dir=lambda wildcards: synthetic_only(
            wildcards.scene,
            scene_entry(wildcards)["source"],
            rules.synthetic_scene.output.scene_dir,
            layout=wildcards.layout,
            synthetic_scenes=SYNTHETIC_SCENES,
        ),
    output:
        export_root=directory("results/{scene}/export/{layout}"),
    log:
        "logs/export_scene/{scene}_{layout}.log",
    benchmark:
        "benchmarks/export_scene/{scene}_{layout}.tsv"
    wildcard_constraints:
        layout="lerf_ovs|3dovs",
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        layout=lambda wildcards: wildcards.layout,
        name=lambda wildcards: wildcards.scene,
    script:
        "../scripts/export_scene.py"
