"""Config of evaluation and tables: the `eval` section of config.yaml.

Defaults equal workflow/schemas/stages/eval.schema.yaml (tests/test_config.py holds them equal). The
protocols' constants (30×30 box, 7×7 majority, LangSplat's factor 10) are not settings: they define the
benchmark and live in ccl.eval.lerf_ovs and ccl.query.ops.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalConfig:
    """How scenes are evaluated (rule evaluate) and which figures the report gets."""

    queries: tuple[str, ...] = ()  # text queries; empty = the label categories (LERF-OVS's rule)
    mask_thresh: float = 0.4  # LERF-OVS: threshold on clip(2·minmax − 1) (LangSplat --mask_thresh)
    n_figures: int = 2  # evaluated frames per scene and variant drawn as query overlays for the report

    def __post_init__(self) -> None:
        queries = tuple(self.queries)
        if any(not isinstance(q, str) or not q.strip() for q in queries):
            raise ValueError(f"eval.queries: every query must be a non-empty string, got {list(queries)!r}")
        object.__setattr__(self, "queries", queries)
        if not (isinstance(self.mask_thresh, int | float) and 0 <= self.mask_thresh < 1):
            raise ValueError(f"eval.mask_thresh: expected a number in [0, 1), got {self.mask_thresh!r}")
        if isinstance(self.n_figures, bool) or not isinstance(self.n_figures, int) or self.n_figures < 0:
            raise ValueError(f"eval.n_figures: expected an integer >= 0, got {self.n_figures!r}")
