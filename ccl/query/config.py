"""Config of text queries: the `query` section of config.yaml.

Defaults equal workflow/schemas/stages/query.schema.yaml (tests/test_config.py holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("paper", "langsplat")


@dataclass(frozen=True)
class QueryConfig:
    """How a text query becomes a relevance map (ccl.query)."""

    # paper: CCL-LGS eq. 10, softmax over the query set of cos(prototype, query) / temperature;
    # langsplat: LangSplat's relevancy against the canonical negatives (min over negatives).
    mode: str = "paper"
    temperature: float = 0.1  # paper mode: softmax temperature (0.1 = LangSplat's factor 10)
    threshold: float = 0.5  # relevance above which a pixel / Gaussian is selected (CLI query, query3d)
    negatives: tuple[str, ...] = ("object", "things", "stuff", "texture")  # LangSplat's canonical phrases

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"query.mode: expected one of {list(MODES)}, got {self.mode!r}; fix config.yaml")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ValueError(f"query.temperature: expected a number > 0, got {self.temperature!r}")
        if not (isinstance(self.threshold, int | float) and 0 <= self.threshold <= 1):
            raise ValueError(f"query.threshold: expected a number in [0, 1], got {self.threshold!r}")
        negatives = tuple(self.negatives)
        if not negatives or any(not isinstance(n, str) or not n.strip() for n in negatives):
            raise ValueError(
                f"query.negatives: expected a non-empty list of non-empty phrases, got {list(negatives)!r}"
            )
        object.__setattr__(self, "negatives", negatives)
