"""Relevance of text queries: per prototype, per pixel (a class map) and per Gaussian (appendix D).

A language field's decoder picks one of N prototypes per pixel (or per Gaussian), so a query's relevance
is a function of the prototype alone: computed once per prototype ([N, Q]) and painted over the class
map. Both modes (ccl.query.ops) are per-pixel functions of the feature, so this is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ccl.query.config import QueryConfig
from ccl.query.ops import cosine, l2_normalize, langsplat_relevance, paint, paper_relevance, validate_queries

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TextEmbeddings:
    """The queries and the canonical negatives, embedded by the features' text encoder."""

    queries: tuple[str, ...]  # Q phrases, in the order of the relevance maps
    positives: np.ndarray  # [Q, D] float32, L2-normalised
    negative_phrases: tuple[str, ...]  # K phrases (QueryConfig.negatives)
    negatives: np.ndarray  # [K, D] float32, L2-normalised

    def __post_init__(self) -> None:
        assert self.positives.shape[0] == len(self.queries), (self.positives.shape, self.queries)
        assert self.negatives.shape[0] == len(self.negative_phrases)
        assert self.positives.shape[1] == self.negatives.shape[1]


def text_embeddings(
    queries: Sequence[str], *, cfg: QueryConfig, features_cfg: Any, device: str = "cpu"
) -> TextEmbeddings:
    """Embed the queries and the negatives in one call of `ccl.features.encode_text`."""
    queries = validate_queries(queries)
    from ccl.features import encode_text

    phrases = list(queries) + [n for n in cfg.negatives]
    emb = np.asarray(encode_text(phrases, cfg=features_cfg, device=device), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(phrases):
        raise ValueError(f"encode_text returned shape {emb.shape} for {len(phrases)} phrases")
    emb = l2_normalize(emb)
    q = len(queries)
    return TextEmbeddings(queries, emb[:q], tuple(cfg.negatives), emb[q:])


def from_arrays(queries: Sequence[str], positives: np.ndarray, negatives: np.ndarray, *, cfg: QueryConfig):
    """TextEmbeddings from arrays already computed (tests, callers with their own encoder)."""
    queries = validate_queries(queries)
    return TextEmbeddings(queries, l2_normalize(positives), tuple(cfg.negatives), l2_normalize(negatives))


def feature_relevance(
    features: np.ndarray, emb: TextEmbeddings, *, cfg: QueryConfig, with_negatives: bool = False
) -> np.ndarray:
    """Relevance of every query for features [..., D] -> [..., Q] float32 in [0, 1].

    paper: softmax over the query set. With a single query, or `with_negatives` (interactive queries:
    a pixel that matches none of a few texts is then not forced onto one of them), the set is completed
    by the negatives and only the queries' probabilities are returned.
    langsplat: LangSplat's relevancy against the negatives.
    """
    q = len(emb.queries)
    pos = cosine(features, emb.positives)
    if cfg.mode == "paper":
        if q == 1 or with_negatives:
            sims = np.concatenate([pos, cosine(features, emb.negatives)], axis=-1)
            return paper_relevance(sims, temperature=cfg.temperature, n_queries=q)
        return paper_relevance(pos, temperature=cfg.temperature)
    if cfg.mode == "langsplat":
        return langsplat_relevance(pos, cosine(features, emb.negatives))
    raise AssertionError(cfg.mode)  # QueryConfig validates the mode


def prototype_relevance(
    prototypes: np.ndarray, emb: TextEmbeddings, *, cfg: QueryConfig, with_negatives: bool = False
) -> np.ndarray:
    """[N, D] prototypes -> [N, Q] relevance of each prototype for each query."""
    prototypes = np.asarray(prototypes, dtype=np.float32)
    if prototypes.ndim != 2:
        raise ValueError(f"prototypes: expected [N, D], got shape {prototypes.shape}")
    return feature_relevance(prototypes, emb, cfg=cfg, with_negatives=with_negatives)


def relevance_maps(class_map: np.ndarray, proto_relevance: np.ndarray) -> np.ndarray:
    """A decoded class map [H, W] (−1 = no class, relevance 0) -> relevance maps [Q, H, W] float32."""
    return paint(class_map, proto_relevance, fill=0.0)


@dataclass(frozen=True, eq=False)
class GaussianSelection:
    """Appendix D: Gaussians chosen by text from their decoded class (their own feature's, or the one
    they are drawn as in the training views)."""

    queries: tuple[str, ...]
    classes: np.ndarray  # [G] int64, the prototype each Gaussian is read as, -1 = none (drawn in no view)
    relevance: np.ndarray  # [Q, G] float32
    threshold: float

    @property
    def per_query(self) -> np.ndarray:
        """[Q, G] bool: the Gaussians each query selects, relevance > threshold."""
        return self.relevance > self.threshold

    @property
    def selected(self) -> np.ndarray:
        """[G] bool: the Gaussians at least one query selects."""
        return self.per_query.any(axis=0)


def select_gaussians(
    classes: np.ndarray,
    prototypes: np.ndarray,
    emb: TextEmbeddings,
    *,
    cfg: QueryConfig,
    with_negatives: bool = True,
) -> GaussianSelection:
    """Decoded classes [G] (argmax of the decoder on each Gaussian's own feature) -> selection."""
    classes = np.asarray(classes).astype(np.int64).reshape(-1)
    rel = prototype_relevance(prototypes, emb, cfg=cfg, with_negatives=with_negatives)  # [N, Q]
    per_gaussian = paint(classes[None, :], rel)[:, 0, :]  # [Q, G]
    sel = GaussianSelection(emb.queries, classes, per_gaussian, float(cfg.threshold))
    log.info(
        "query3d %s: %d of %d Gaussians above %.2f (%s mode)",
        list(emb.queries),
        int(sel.selected.sum()),
        classes.size,
        cfg.threshold,
        cfg.mode,
    )
    return sel


def select_gaussians_voted(
    votes: np.ndarray,
    prototypes: np.ndarray,
    emb: TextEmbeddings,
    *,
    cfg: QueryConfig,
    with_negatives: bool = True,
) -> GaussianSelection:
    """Class votes [G, N] (how often each Gaussian is seen drawn as each class, ccl.query.view's
    `gaussian_view_votes`, its `classes`) -> selection: a Gaussian's relevance is its votes' mean relevance; one with no
    vote (drawn in no view) has relevance 0 and class -1."""
    votes = np.asarray(votes, dtype=np.float32)
    rel = prototype_relevance(prototypes, emb, cfg=cfg, with_negatives=with_negatives)  # [N, Q]
    if votes.ndim != 2 or votes.shape[1] != rel.shape[0]:
        raise ValueError(f"votes: expected [G, {rel.shape[0]}], got shape {votes.shape}")
    total = votes.sum(axis=1)
    per_gaussian = (votes @ rel / np.maximum(total, 1.0)[:, None]).T.astype(np.float32)  # [Q, G]
    classes = np.where(total > 0, votes.argmax(axis=1), -1).astype(np.int64)
    sel = GaussianSelection(emb.queries, classes, per_gaussian, float(cfg.threshold))
    log.info(
        "query3d %s: %d of %d Gaussians above %.2f over the views (%s mode, %d drawn in none)",
        list(emb.queries), int(sel.selected.sum()), len(votes), cfg.threshold, cfg.mode, int((total == 0).sum()),
    )  # fmt: skip
    return sel


# `ccl query3d --clean labels`: a selected Gaussian is kept when, in at least this share of the views that
# see it, the field's training map had a class relevant to the query at its pixel. On the synthetic
# scene (bench/selection_quality.py, seeds 0-2) the object's own Gaussians have 0.33-0.6 at their 1st
# percentile (median 0.75-0.94), the stretch of table the field draws as "blue book" though training never
# labelled it so 0.0-0.07; every share from 0.15 to 0.35 gives the same selections to within 0.5 %.
LABEL_SUPPORT_MIN = 0.25


def label_support(
    labels: np.ndarray,
    seen: np.ndarray,
    prototypes: np.ndarray,
    emb: TextEmbeddings,
    *,
    cfg: QueryConfig,
    with_negatives: bool = True,
) -> np.ndarray:
    """[Q, G] float32: for each query, the share of the views seeing each Gaussian whose training map had a
    class relevant to it (relevance > cfg.threshold) at the Gaussian's pixel; 0 for a Gaussian seen in
    none. `labels` [G, N]: the views whose map had each class there; `seen` [G]: the views that see it
    (ccl.query.view.ViewVotes)."""
    labels = np.asarray(labels, dtype=np.float32)
    rel = prototype_relevance(prototypes, emb, cfg=cfg, with_negatives=with_negatives)  # [N, Q]
    if labels.ndim != 2 or labels.shape[1] != rel.shape[0]:
        raise ValueError(f"labels: expected [G, {rel.shape[0]}], got shape {labels.shape}")
    relevant = (rel > cfg.threshold).astype(np.float32)  # [N, Q]
    return (labels @ relevant / np.maximum(np.asarray(seen, np.float32), 1.0)[:, None]).T
