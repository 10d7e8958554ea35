"""Config of evaluation and tables: the `eval` section of config.yaml.

Defaults equal workflow/schemas/stages/eval.schema.yaml (tests/test_config.py holds them equal). The
protocols' constants (30×30 box, 7×7 majority, LangSplat's factor 10) are not settings: they define the
benchmark and live in ccl.eval.lerf_ovs and ccl.query.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section, is_int, is_number


@dataclass(frozen=True)
class EvalConfig:
    """How scenes are evaluated (rule evaluate) and which figures the report gets."""

    queries: tuple[str, ...] = ()  # text queries; empty = the label categories (LERF-OVS's rule)
    mask_thresh: float = 0.4  # LERF-OVS: threshold on clip(2·minmax − 1) (LangSplat --mask_thresh)
    n_figures: int = 2  # evaluated frames per scene and variant drawn as query overlays for the report

    def __post_init__(self) -> None:
        check_section(
            "eval",
            self,
            [
                (
                    "queries",
                    lambda v: all(isinstance(q, str) and q.strip() for q in tuple(v)),
                    "a list of non-empty strings (empty = the label categories)",
                ),
                ("mask_thresh", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
                ("n_figures", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
            ],
        )
        object.__setattr__(self, "queries", tuple(self.queries))
