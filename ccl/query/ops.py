"""Small pure functions of text queries on plain arrays (numpy + OpenCV, no torch).

Two relevance rules, named after where they come from:

- `paper_relevance`: CCL-LGS eq. 10. A pixel's refined feature is the prototype its decoder picks;
  p(τ|v) = softmax over the query set T of cos(f_v, φ(τ)) / temperature.
- `langsplat_relevance`: LangSplat's relevancy (minghanqin/LangSplat, eval/openclip_encoder.py,
  `OpenCLIPNetwork.get_relevancy`): for each canonical negative n, softmax over {query, n} of 10·cos;
  the relevance is the query's probability against the negative where it is lowest (argmin, i.e. min).

The scale (LangSplat: "level") of a query is the one whose smoothed relevance peaks highest
(eval/evaluate_iou_loc.py, `activate_stream`): smoothed = 0.5 · (30×30 box mean + raw), cv2.filter2D
with its default border (BORDER_REFLECT_101) and anchor (the kernel centre, (15, 15) for an even 30).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# LangSplat eval/openclip_encoder.py: `softmax = torch.softmax(10 * sims, dim=-1)`.
LANGSPLAT_LOGIT_SCALE = 10.0
# LangSplat eval/evaluate_iou_loc.py: `scale = 30; kernel = np.ones((scale, scale)) / (scale**2)`.
BOX_SMOOTH_SIZE = 30


def validate_queries(queries: Iterable[str], *, where: str = "queries") -> tuple[str, ...]:
    """The queries as a tuple; an empty, blank or repeated query raises ValueError naming it."""
    if isinstance(queries, str):
        queries = [queries]
    out = tuple(queries)
    if not out:
        raise ValueError(f"{where}: no text query given; pass at least one non-empty phrase")
    for i, q in enumerate(out):
        if not isinstance(q, str):
            raise ValueError(f"{where}[{i}]: a query must be a string, got {type(q).__name__} {q!r}")
        if not q.strip():
            raise ValueError(
                f"{where}[{i}]: empty query string {q!r}; give a phrase such as 'glass of water'"
            )
    seen: set[str] = set()
    dupes = [q for q in out if q in seen or seen.add(q)]  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(
            f"{where}: repeated queries {sorted(set(dupes))}; each phrase must appear once "
            "(the paper's softmax runs over the query set)"
        )
    return out


def l2_normalize(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, np.float32(1e-12))


def cosine(features: np.ndarray, text: np.ndarray) -> np.ndarray:
    """cos(features [..., D], text [Q, D]) -> [..., Q] float32 (both sides L2-normalised here)."""
    f = l2_normalize(features)
    t = l2_normalize(text)
    if f.shape[-1] != t.shape[-1]:
        raise ValueError(
            f"feature dimension {f.shape[-1]} != text embedding dimension {t.shape[-1]}: the prototypes "
            "and the text encoder must be the same model (features.backend / features.model)"
        )
    return f @ t.T


def softmax(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def paper_relevance(sims: np.ndarray, *, temperature: float, n_queries: int | None = None) -> np.ndarray:
    """CCL-LGS eq. 10: softmax over the last axis of sims / temperature; [..., T] -> [..., Q].

    `sims[..., :n_queries]` are the queries reported; further columns (if any) only complete the set.
    """
    p = softmax(np.asarray(sims, dtype=np.float32) / np.float32(temperature), axis=-1)
    return p if n_queries is None else p[..., :n_queries]


def langsplat_relevance(pos_sims: np.ndarray, neg_sims: np.ndarray) -> np.ndarray:
    """LangSplat's relevancy: [..., Q] positive and [..., K] negative cosines -> [..., Q] in (0, 1).

    For each query q and negative k: softmax over (10·cos_q, 10·cos_k), first entry; then the minimum
    over k (LangSplat takes the argmin over negatives of that probability and returns it).
    """
    pos = np.asarray(pos_sims, dtype=np.float32)[..., :, None]  # [..., Q, 1]
    neg = np.asarray(neg_sims, dtype=np.float32)[..., None, :]  # [..., 1, K]
    pos, neg = np.broadcast_arrays(pos, neg)
    pair = np.stack([pos, neg], axis=-1) * np.float32(LANGSPLAT_LOGIT_SCALE)  # [..., Q, K, 2]
    prob = softmax(pair, axis=-1)[..., 0]  # [..., Q, K]
    return prob.min(axis=-1)


def box_filter(x: np.ndarray, size: int = BOX_SMOOTH_SIZE) -> np.ndarray:
    """LangSplat's `cv2.filter2D(x, -1, ones((size, size)) / size**2)` on a [H, W] map (float32)."""
    import cv2

    kernel = np.ones((size, size)) / (size**2)
    return cv2.filter2D(np.ascontiguousarray(x, dtype=np.float32), -1, kernel)


def smoothed_relevance(x: np.ndarray) -> np.ndarray:
    """LangSplat `activate_stream`: 0.5 · (box-filtered + raw) of one [H, W] relevance map."""
    x = np.asarray(x, dtype=np.float32)
    return np.float32(0.5) * (box_filter(x) + x)


def choose_scale(maps: np.ndarray) -> int:
    """Index of the scale whose smoothed relevance [L, H, W] peaks highest (first on ties)."""
    maps = np.asarray(maps)
    assert maps.ndim == 3, maps.shape
    peaks = [float(smoothed_relevance(m).max()) for m in maps]
    return int(np.argmax(peaks))


def paint(class_map: np.ndarray, values: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    """Per-class values [N, Q] painted over a class map [H, W] (−1 = no class) -> [Q, H, W] float32."""
    class_map = np.asarray(class_map)
    values = np.asarray(values, dtype=np.float32)
    n = values.shape[0]
    if class_map.size and (class_map.max() >= n or class_map.min() < -1):
        raise ValueError(
            f"class map holds indices in [{class_map.min()}, {class_map.max()}] but there are {n} "
            "prototypes: the language field and the codebook are of different runs; rerun the workflow"
        )
    table = np.concatenate([values, np.full((1, values.shape[1]), fill, np.float32)], axis=0)
    idx = np.where(class_map < 0, n, class_map)
    return np.moveaxis(table[idx], -1, 0)


def scale_sets(scales: Sequence[str]) -> list[tuple[str, ...]]:
    """Candidate scale sets evaluated from the configured scales.

    The separate scales (sp, wp) form one multi-scale set, chosen per query by the highest smoothed
    peak; the single merged scale `all` (the paper's Table 5) is a set of its own.
    """
    multi = tuple(s for s in scales if s != "all")
    out = [multi] if multi else []
    if "all" in scales:
        out.append(("all",))
    return out
