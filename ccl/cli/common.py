"""What every `ccl` command shares: the config, the stage configs, the run a folder names, the text
encoder of a scene, the device, and the flags common to the commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SCENE_DIR_HELP = "results/<scene> folder written by the workflow (or its seed<N>/ folder: one run)"
FRAME_HELP = "view: its name (frame_00060) or the number in it (60)"


def config(args: argparse.Namespace) -> dict[str, Any]:
    from ccl.config import load_config

    path = args.config
    if path is None and Path("config.yaml").is_file():
        path = "config.yaml"
    return load_config(path)


def stage_cfgs(config: dict[str, Any], args: argparse.Namespace | None = None) -> dict[str, Any]:
    from ccl.config import section, section_dataclass
    from ccl.eval import EvalConfig
    from ccl.query import QueryConfig

    q = dict(config["query"])
    if args is not None and getattr(args, "mode", None):
        q["mode"] = args.mode
    if args is not None and getattr(args, "threshold", None) is not None:
        q["threshold"] = args.threshold
    return {
        "query_cfg": section(QueryConfig, q, where="config: query"),
        "eval_cfg": section(EvalConfig, config["eval"], where="config: eval"),
        "scene_cfg": section(
            section_dataclass("scene_load"), config["scene_load"], where="config: scene_load"
        ),
    }


def text_encoder(args: argparse.Namespace, scene_dir: Path) -> Any:
    """The text encoder of the results/{scene} folder `scene_dir` (the features settings its mask
    features were made with); an explicit --config whose features settings differ is refused."""
    import yaml

    from ccl.query.fields import check_text_encoder_agrees, scene_text_encoder

    made_with = scene_text_encoder(scene_dir)
    if args.config is not None:
        given = (yaml.safe_load(Path(args.config).read_text()) or {}).get("features") or {}
        check_text_encoder_agrees(made_with, given, scene_dir=scene_dir, config=args.config)
    return made_with


def run_of(args: argparse.Namespace) -> Any:
    """The run the command's folder and `--seed` name (ccl.results_tree.run_folders)."""
    from ccl.results_tree import run_folders

    return run_folders(args.scene_dir, seed=args.seed)


def device(config: dict[str, Any]) -> str:
    from ccl.device import resolve_device

    return resolve_device(config["device"])


def need_file(path: Path, rule: str, what: str) -> Path:
    """`path` if it is a file, else FileNotFoundError naming it and the workflow rule that makes it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; {what} is made by the workflow's rule {rule}: run the workflow up to it"
        )
    return path


def language_source(run: Any, variant: str, scale: str, *, scene: str, device: str):
    """The variant's language fields of the `--scale` choice, each with its codebook, checked first."""
    from ccl.query.view import language_source

    gdir, cdir = run.run_dir / "gaussians" / variant, run.run_dir / "codebook" / variant
    if scale != "auto":
        need_file(gdir / f"{scale}.safetensors", "train_language", f"the {scale} language field of {variant}")
    elif not any(not p.name.endswith(".partial.safetensors") for p in gdir.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{gdir}: no language field (<scale>.safetensors) of variant {variant!r}; the workflow's rule "
            "train_language makes them: run the workflow up to it"
        )
    for p in gdir.glob("*.safetensors"):
        if not p.name.endswith(".partial.safetensors"):
            s = p.name.removesuffix(".safetensors")
            need_file(cdir / f"{s}.h5", "train_codebook", f"the {s} codebook of {variant}")
    return language_source(run, variant, scale=scale, scene=scene, device=device)


def view_session(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the run, a `ccl.view.session.ViewSession` on it): what `ccl view` and `ccl render --path` draw."""
    from ccl.view.session import open_session

    cfg = config(args)
    cfgs = stage_cfgs(cfg, args)
    run = run_of(args)
    session = open_session(
        run, variant=args.variant, query_cfg=cfgs["query_cfg"], scene_cfg=cfgs["scene_cfg"],
        text_encoder=lambda: text_encoder(args, run.scene_dir), device=device(cfg),
    )  # fmt: skip
    return run, session


def add_common(sp: argparse.ArgumentParser, *, query: bool = True) -> None:
    """--config, --variant, --seed; with `query`, also --scale, --mode and --threshold."""
    sp.add_argument("--config", help="config YAML (default: ./config.yaml if present, else the repository's)")
    sp.add_argument(
        "--variant", default="full", help="codebook variant of the language field (default: full)"
    )
    sp.add_argument(
        "--seed", type=int, help="the run of this seed, when the scene's folder has several (seed<N>/)"
    )
    if query:
        sp.add_argument("--scale", default="auto", help="sp, wp, all, or auto (highest smoothed peak)")
        sp.add_argument("--mode", choices=["paper", "langsplat"], help="relevance mode (config: query.mode)")
        sp.add_argument("--threshold", type=float, help="selection threshold (config: query.threshold)")
