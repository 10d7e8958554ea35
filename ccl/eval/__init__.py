"""Evaluation: the LERF-OVS protocol exactly as LangSplat's evaluation runs it, the 3D-OVS protocol,
per-query CSVs, result tables and report figures.

`evaluate_scene` backs rule evaluate and `ccl evaluate`; `build_tables` backs rule tables and
`ccl tables`. The protocol steps are plain functions on arrays (ccl.eval.lerf_ovs, ccl.eval.ovs3d).
"""

from ccl.eval.config import EvalConfig
from ccl.eval.labels import (
    CategoryLabel,
    FrameLabels,
    LabelWarning,
    polygon_to_mask,
    read_lerf_label_dir,
    read_lerf_labels,
)
from ccl.eval.lerf_ovs import QueryResult, evaluate_query, localize, majority_smooth, normalise
from ccl.eval.ovs3d import OvsFrameLabels, evaluate_view
from ccl.eval.pipeline import evaluate_scene
from ccl.eval.run import (
    CSV_COLUMNS,
    QueryRow,
    evaluate_3dovs,
    evaluate_lerf_ovs,
    resolve_queries,
    rows_to_csv,
    summarize,
    to_label_size,
)
from ccl.eval.tables import build_tables, find_query_csvs

__all__ = [
    "CSV_COLUMNS",
    "CategoryLabel",
    "EvalConfig",
    "FrameLabels",
    "LabelWarning",
    "OvsFrameLabels",
    "QueryResult",
    "QueryRow",
    "build_tables",
    "evaluate_3dovs",
    "evaluate_lerf_ovs",
    "evaluate_query",
    "evaluate_scene",
    "evaluate_view",
    "find_query_csvs",
    "localize",
    "majority_smooth",
    "normalise",
    "polygon_to_mask",
    "read_lerf_label_dir",
    "read_lerf_labels",
    "resolve_queries",
    "rows_to_csv",
    "summarize",
    "to_label_size",
]
