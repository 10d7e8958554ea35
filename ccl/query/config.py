"""Config of text queries: the `query` section of config.yaml.

Defaults equal workflow/schemas/stages/query.schema.yaml (tests/test_config.py holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section, is_number

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
        check_section(
            "query",
            self,
            [
                ("mode", lambda v: v in MODES, f"one of {list(MODES)}"),
                ("temperature", lambda v: is_number(v) and v > 0, "a number > 0"),
                ("threshold", lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
                (
                    "negatives",
                    lambda v: len(tuple(v)) > 0 and all(isinstance(n, str) and n.strip() for n in tuple(v)),
                    "a non-empty list of non-empty phrases",
                ),
            ],
        )
        object.__setattr__(self, "negatives", tuple(self.negatives))
