"""Text queries on a trained language field: relevance maps (paper eq. 10 or LangSplat's relevancy),
scale choice, and the appendix-D selection of Gaussians by text. See ccl.query.ops for the rules."""

from ccl.query.config import MODES, QueryConfig
from ccl.query.ops import (
    BOX_SMOOTH_SIZE,
    LANGSPLAT_LOGIT_SCALE,
    box_filter,
    choose_scale,
    langsplat_relevance,
    paper_relevance,
    scale_sets,
    smoothed_relevance,
    validate_queries,
)
from ccl.query.relevance import (
    GaussianSelection,
    TextEmbeddings,
    feature_relevance,
    from_arrays,
    prototype_relevance,
    relevance_maps,
    select_gaussians,
    text_embeddings,
)

__all__ = [
    "BOX_SMOOTH_SIZE",
    "LANGSPLAT_LOGIT_SCALE",
    "MODES",
    "GaussianSelection",
    "QueryConfig",
    "TextEmbeddings",
    "box_filter",
    "choose_scale",
    "feature_relevance",
    "from_arrays",
    "langsplat_relevance",
    "paper_relevance",
    "prototype_relevance",
    "relevance_maps",
    "scale_sets",
    "select_gaussians",
    "smoothed_relevance",
    "text_embeddings",
    "validate_queries",
]
