# Evaluation: each seed's and variant's language fields (every scale) →
# results/{scene}/seed{N}/eval/{variant}/queries.csv
# with the scene's protocol (LERF-OVS as LangSplat's evaluation runs it, or 3D-OVS); then every table
# under results/tables/, rebuilt from those CSVs and the benchmark files only. Both feed the report.
# Scenes with `protocol: none` are not evaluated.
from ccl.eval.tables import EFFICIENCY_RULES, table_names

EVAL_SCENES = [
    s for s, e in config["scenes"].items() if e.get("protocol", "lerf_ovs") != "none"
]
EVAL_PROTOCOLS = {config["scenes"][s].get("protocol", "lerf_ovs") for s in EVAL_SCENES}

# results/tables/ files for this config: ccl.eval.tables.table_names decides them, for this rule's
# outputs and for the writer alike.
TABLE_NAMES = table_names(EVAL_PROTOCOLS, SCALES)
TABLE_OUTPUTS = {EFFICIENCY_RULES: f"results/tables/{EFFICIENCY_RULES}.csv"}
for _name in TABLE_NAMES:
    TABLE_OUTPUTS[_name] = report(
        f"results/tables/{_name}.csv",
        caption=f"../report/{_name.removesuffix('_3dovs')}.rst",
        category="Tables",
    )
    TABLE_OUTPUTS[f"{_name}_md"] = f"results/tables/{_name}.md"

# A config whose scenes all have `protocol: none` has nothing to evaluate and no tables.
if EVAL_SCENES:

    rule evaluate:
        input:
            manifest=rules.scene_manifest.output.manifest,
            # one per scale, in SCALES order (params.scales)
            fields=expand(
                rules.train_language.output.field, scale=SCALES, allow_missing=True
            ),
            codebooks=expand(
                rules.train_codebook.output.codebook, scale=SCALES, allow_missing=True
            ),
            labels=scene_label_files,
        output:
            queries="results/{scene}/seed{seed}/eval/{variant}/queries.csv",
            summary="results/{scene}/seed{seed}/eval/{variant}/summary.json",
            figures=report(
                directory("results/{scene}/seed{seed}/eval/{variant}/figures"),
                patterns=["{frame}.png"],
                caption="../report/relevance_maps.rst",
                category="Relevance maps",
                subcategory="{scene}, seed {seed}, {variant}",
            ),
        log:
            "logs/evaluate/{scene}_seed{seed}_{variant}.log",
        benchmark:
            "benchmarks/evaluate/{scene}_seed{seed}_{variant}.tsv"
        # renders class maps with the CPU tile kernel, whose threads wait on torch's on a busy CPU (see
        # splat.smk): one thread, jobs side by side
        threads: 1
        resources:
            **model_resources(4000, 30),
        params:
            query=config["query"],
            eval=config["eval"],
            features=config["features"],
            scene_load=config["scene_load"],
            scales=SCALES,
            seed=run_seed,
            device=config["device"],
        script:
            "../scripts/evaluate.py"

    rule tables:
        input:
            queries=expand(
                rules.evaluate.output.queries,
                scene=EVAL_SCENES,
                seed=SEEDS,
                variant=VARIANTS,
            ),
        output:
            **TABLE_OUTPUTS,
        log:
            "logs/tables/tables.log",
        # reads CSVs: one thread
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        params:
            benchmarks="benchmarks",
        script:
            "../scripts/tables.py"

    ALL_TARGETS.extend(rules.tables.output)

    localrules:
        tables,
