"""Config of the Gaussian fields: the `rgb` and `language` sections of config.yaml.

Defaults equal workflow/schemas/stages/rgb.schema.yaml and language.schema.yaml (tests/test_config.py
holds them equal); values are checked when a config is built (ccl.config_checks). The defaults are those of the embedded synthetic scene (a CPU run of minutes);
configs for real benchmarks set the 3DGS schedule (30k iterations, densification until 15k).
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section

STRATEGIES = ("default", "mcmc")


@dataclass(frozen=True)
class RgbConfig:
    """The colour field (3DGS): initialisation, loss, Adam learning rates, densification, checkpoints."""

    iterations: int = 800  # optimisation steps (one view each); 3DGS: 30000
    holdout_every: int = 8  # every k-th view (0, k, 2k, ...) is held out for PSNR; 0 = none
    sh_degree: int = 1  # spherical-harmonics degree of the colours (0 = view-independent)
    ssim_lambda: float = 0.2  # loss = (1 - λ)·L1 + λ·D-SSIM
    init_opacity: float = 0.1  # opacity of the initial Gaussians
    init_scale: float = 1.0  # initial scale = this × mean distance to the 3 nearest points
    init_random_points: int = (
        20000  # random Gaussians where the cameras look, away from them, if the scene has no points
    )
    lr_means: float = 1.6e-4  # × scene scale, decayed exponentially to lr_means_final_factor × that
    lr_means_final_factor: float = 0.01
    lr_scales: float = 1e-2  # on log scales (3DGS: 5e-3, for 30k steps)
    lr_quats: float = 1e-3
    lr_opacities: float = 0.1  # on opacity logits (3DGS: 5e-2, for 30k steps)
    lr_sh0: float = 2.5e-3  # SH degree-0 (base colour) coefficients
    lr_shN: float = 1.25e-4  # higher SH coefficients (3DGS: lr_sh0 / 20)
    strategy: str = "default"  # densification: "default" (3DGS: clone, split, prune) or "mcmc"
    refine_start_iter: int = 100  # densify after this step (3DGS: 500)
    refine_stop_iter: int = 650  # ... and until this one (3DGS: 15000)
    refine_every: int = 100
    reset_every: int = 3000  # opacity reset period ("default" strategy)
    grow_grad2d: float = 2e-4  # mean screen-space gradient above which a Gaussian is cloned or split
    grow_scale3d: float = 0.01  # × scene scale: clone below, split above
    prune_opa: float = 0.005  # prune below this opacity ("default"); dead threshold ("mcmc")
    prune_scale3d: float = 0.1  # × scene scale: prune larger Gaussians after the first opacity reset
    cap_max: int = 1_000_000  # "mcmc": maximum number of Gaussians
    mcmc_noise_lr: float = 5e5  # "mcmc": position noise, × the current means learning rate
    opacity_reg: float = 0.0  # L1 weight on opacities (MCMC uses 0.01)
    scale_reg: float = 0.0  # L1 weight on scales (MCMC uses 0.01)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB in [0, 1] behind the Gaussians
    checkpoint_every: int = 200  # steps between resumable checkpoints (*.partial.safetensors)

    def __post_init__(self) -> None:
        check_section(
            "rgb",
            self,
            [
                ("iterations", lambda v: v >= 1, ">= 1"),
                ("holdout_every", lambda v: v == 0 or v >= 2, "0 or >= 2"),
                ("sh_degree", lambda v: 0 <= v <= 3, "in [0, 3]"),
                ("ssim_lambda", lambda v: 0 <= v <= 1, "in [0, 1]"),
                ("init_opacity", lambda v: 0 < v < 1, "in (0, 1)"),
                ("init_scale", lambda v: v > 0, "> 0"),
                ("init_random_points", lambda v: v >= 1, ">= 1"),
                ("strategy", lambda v: v in STRATEGIES, f"one of {STRATEGIES}"),
                ("refine_start_iter", lambda v: v >= 0, ">= 0"),
                ("refine_stop_iter", lambda v: v >= 0, ">= 0"),
                ("refine_every", lambda v: v >= 1, ">= 1"),
                ("reset_every", lambda v: v >= 1, ">= 1"),
                ("grow_grad2d", lambda v: v > 0, "> 0"),
                ("grow_scale3d", lambda v: v > 0, "> 0"),
                ("prune_opa", lambda v: v > 0, "> 0"),
                ("prune_scale3d", lambda v: v > 0, "> 0"),
                ("cap_max", lambda v: v >= 1, ">= 1"),
                ("mcmc_noise_lr", lambda v: v >= 0, ">= 0"),
                ("opacity_reg", lambda v: v >= 0, ">= 0"),
                ("scale_reg", lambda v: v >= 0, ">= 0"),
                ("background", lambda v: len(v) == 3 and all(0 <= b <= 1 for b in v), "3 numbers in [0, 1]"),
                ("checkpoint_every", lambda v: v >= 1, ">= 1"),
            ]
            + [(k, lambda v: v > 0, "> 0") for k in _LR_KEYS],
        )


_LR_KEYS = ("lr_means", "lr_means_final_factor", "lr_scales", "lr_quats", "lr_opacities", "lr_sh0", "lr_shN")


@dataclass(frozen=True)
class LanguageConfig:
    """The language field of one scale: per-Gaussian features, the decoder, and how they are trained."""

    iterations: int = 300  # optimisation steps (one view each); the paper: 30000
    feature_dim: int = 8  # language feature per Gaussian
    decoder_hidden: int = 64  # width of the decoder's hidden layer (feature_dim → hidden → n_classes)
    lr: float = 1e-3  # Adam, decoder weights
    lr_features: float = 1e-2  # Adam, per-Gaussian features
    joint: bool = False  # train colour and language together from the scene's points (paper); else freeze rgb
    language_weight: float = 1.0  # joint only: loss = colour loss + this × cross-entropy
    holdout_every: int = 8  # every k-th view is held out (its accuracy is reported apart); 0 = none
    checkpoint_every: int = 100  # steps between resumable checkpoints (*.partial.safetensors)

    def __post_init__(self) -> None:
        check_section(
            "language",
            self,
            [
                ("iterations", lambda v: v >= 1, ">= 1"),
                ("feature_dim", lambda v: v >= 1, ">= 1"),
                ("decoder_hidden", lambda v: v >= 1, ">= 1"),
                ("lr", lambda v: v > 0, "> 0"),
                ("lr_features", lambda v: v > 0, "> 0"),
                ("language_weight", lambda v: v > 0, "> 0"),
                ("holdout_every", lambda v: v == 0 or v >= 2, "0 or >= 2"),
                ("checkpoint_every", lambda v: v >= 1, ">= 1"),
            ],
        )
