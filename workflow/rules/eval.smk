# Evaluation: each variant's language fields (every scale) → results/{scene}/eval/{variant}/queries.csv
# with the scene's protocol (LERF-OVS as LangSplat's evaluation runs it, or 3D-OVS); then every table
# under results/tables/, rebuilt from those CSVs and the benchmark files only. Both feed the report.
# Scenes with `protocol: none` are not evaluated.

EVAL_SCENES = [
    s for s, e in config["scenes"].items() if e.get("protocol", "lerf_ovs") != "none"
]
EVAL_PROTOCOLS = {config["scenes"][s].get("protocol", "lerf_ovs") for s in EVAL_SCENES}


def evaluate_inputs(wildcards):
    """The manifest, and per scale the language field and the codebook it was trained on."""
    out = {"manifest": rules.scene_manifest.output.manifest}
    for scale in SCALES:
        w = {"scene": wildcards.scene, "variant": wildcards.variant, "scale": scale}
        out[f"field_{scale}"] = expand(rules.train_language.output.field, **w)[0]
        out[f"codebook_{scale}"] = expand(rules.codebook.output.codebook, **w)[0]
    return out


def evaluate_use_gpu():
    return int(config["device"] == "cuda")


def table_outputs():
    """results/tables/ files rule tables writes for this config (ccl.eval.tables)."""
    names = []
    for protocol, suffix in (("lerf_ovs", ""), ("3dovs", "_3dovs")):
        if protocol not in EVAL_PROTOCOLS:
            continue
        names += [f"table1{suffix}", f"table2{suffix}"]
        if "all" in SCALES:
            names.append(f"table5{suffix}")
        if protocol == "lerf_ovs":
            names.append("localization")
    names.append("efficiency")
    out = {}
    for name in names:
        caption = name.removesuffix("_3dovs")
        out[name] = report(
            f"results/tables/{name}.csv",
            caption=f"../report/{caption}.rst",
            category="Tables",
        )
        out[f"{name}_md"] = f"results/tables/{name}.md"
    out["efficiency_rules"] = "results/tables/efficiency_rules.csv"
    return out


def _has_rule(name):
    from snakemake.exceptions import WorkflowError

    try:
        getattr(rules, name)
    except WorkflowError:
        return False
    return True


# Until the splat and codebook stages define their rules, evaluation cannot be wired (dry runs stay valid).
if _has_rule("train_language") and _has_rule("codebook") and EVAL_SCENES:

    rule evaluate:
        input:
            unpack(evaluate_inputs),
        output:
            queries="results/{scene}/eval/{variant}/queries.csv",
            summary="results/{scene}/eval/{variant}/summary.json",
            figures=report(
                directory("results/{scene}/eval/{variant}/figures"),
                patterns=["{frame}.png"],
                caption="../report/relevance_maps.rst",
                category="Relevance maps",
                subcategory="{scene}, {variant}",
            ),
        log:
            "logs/evaluate/{scene}_{variant}.log",
        benchmark:
            "benchmarks/evaluate/{scene}_{variant}.tsv"
        resources:
            mem_mb=4000,
            runtime=30,
            gpu=evaluate_use_gpu(),
        params:
            query=config["query"],
            eval=config["eval"],
            features=config["features"],
            scene_load=config["scene_load"],
            scales=SCALES,
            seed=config["seed"],
            device=config["device"],
        script:
            "../scripts/evaluate.py"

    rule tables:
        input:
            queries=expand(
                rules.evaluate.output.queries, scene=EVAL_SCENES, variant=VARIANTS
            ),
        output:
            **table_outputs(),
        log:
            "logs/tables/tables.log",
        resources:
            mem_mb=1000,
            runtime=5,
        params:
            benchmarks="benchmarks",
        script:
            "../scripts/tables.py"

    ALL_TARGETS.extend(rules.tables.output)
