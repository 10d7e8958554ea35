"""Text queries on a trained language field: relevance maps (paper eq. 10 or LangSplat's relevancy),
scale choice, the 2D overlay of a view and the appendix-D selection of Gaussians by text.

Rules in ccl.query.ops; per-prototype / per-pixel / per-Gaussian relevance in ccl.query.relevance;
the verbs on a results/{scene} folder (`query_image`, `query_gaussians`) in ccl.query.view.
"""

from ccl.query.config import MODES, QueryConfig
from ccl.query.fields import LanguageFieldSource, read_prototypes, scene_fields
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
from ccl.query.view import pick_camera, query_gaussians, query_image

__all__ = [
    "BOX_SMOOTH_SIZE",
    "LANGSPLAT_LOGIT_SCALE",
    "MODES",
    "GaussianSelection",
    "LanguageFieldSource",
    "QueryConfig",
    "TextEmbeddings",
    "box_filter",
    "choose_scale",
    "feature_relevance",
    "from_arrays",
    "langsplat_relevance",
    "paper_relevance",
    "pick_camera",
    "prototype_relevance",
    "query_gaussians",
    "query_image",
    "read_prototypes",
    "relevance_maps",
    "scale_sets",
    "scene_fields",
    "select_gaussians",
    "smoothed_relevance",
    "text_embeddings",
    "validate_queries",
]
