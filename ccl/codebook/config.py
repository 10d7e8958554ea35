"""Config of the codebook stage: the `codebook` section of config.yaml.

Defaults equal workflow/schemas/stages/codebook.schema.yaml (tests/test_config.py holds them equal);
values are checked when a config is built (ccl.config_checks).
The loss variant is not a config key: it is the `{variant}` wildcard (config `variants` lists which
to run), passed to `fit_codebook(..., variant=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section

# Which pair terms each ablation variant switches on: (pull, push). L_max is always on.
VARIANT_TERMS: dict[str, tuple[bool, bool]] = {
    "full": (True, True),
    "base": (False, False),
    "pull": (True, False),
    "push": (False, True),
}
INITS = ("kmeans++", "random")
ASSIGNMENTS = ("straight_through", "hard")


@dataclass(frozen=True)
class CodebookConfig:
    n_prototypes: int = 128  # N; the paper does not give it, LEGaussians uses 128
    lambda_pull: float = 0.25  # weight of L_pull (eq. 8)
    lambda_push: float = 0.25  # weight of L_push (eq. 8)
    margin: float = 0.7  # m of eq. 7: different-label prototypes are pushed only above this cosine
    lr: float = 0.01  # Adam learning rate on the prototype parameters
    iterations: int = 500  # optimisation steps
    batch_size: int = 2048  # masks per step for L_max (all masks when there are fewer)
    pairs_per_step: int = 512  # same-label pairs, and as many different-label pairs, drawn per step
    init: str = "kmeans++"  # "kmeans++" (+ spherical k-means) on the unit sphere, or "random" masks
    kmeans_iterations: int = 10  # spherical Lloyd iterations after k-means++ seeding (0 = seeding only)
    kmeans_max_samples: int = 50000  # masks (drawn at random) used for initialisation, bounds its cost
    assignment: str = "straight_through"  # gradient of j* in the pair terms: straight_through or hard
    temperature: float = 0.1  # softmax temperature of the straight-through assignment (cosine units)

    def __post_init__(self) -> None:
        check_section(
            "codebook",
            self,
            [
                ("n_prototypes", lambda v: v >= 2, ">= 2"),
                ("lambda_pull", lambda v: v >= 0, ">= 0"),
                ("lambda_push", lambda v: v >= 0, ">= 0"),
                ("margin", lambda v: -1 <= v <= 1, "in [-1, 1]"),
                ("lr", lambda v: v > 0, "> 0"),
                ("iterations", lambda v: v >= 0, ">= 0"),
                ("batch_size", lambda v: v >= 1, ">= 1"),
                ("pairs_per_step", lambda v: v >= 1, ">= 1"),
                ("init", lambda v: v in INITS, f"one of {INITS}"),
                ("kmeans_iterations", lambda v: v >= 0, ">= 0"),
                ("kmeans_max_samples", lambda v: v >= 1, ">= 1"),
                ("assignment", lambda v: v in ASSIGNMENTS, f"one of {ASSIGNMENTS}"),
                ("temperature", lambda v: v > 0, "> 0"),
            ],
        )


def variant_terms(variant: str) -> tuple[bool, bool]:
    """(pull on, push on) of an ablation variant; ValueError for an unknown name."""
    try:
        return VARIANT_TERMS[variant]
    except KeyError:
        raise ValueError(
            f"codebook variant {variant!r} is unknown: expected one of {sorted(VARIANT_TERMS)} "
            "(config `variants`)"
        ) from None
