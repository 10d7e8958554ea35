"""Contrastive codebook learning (paper 3.3 step 2, eq. 4–8) and index maps.

N prototypes on the unit sphere; each mask's feature selects its nearest prototype (eq. 4);
L = L_max + λ_pull·L_pull + λ_push·L_push (eq. 5–8), pull for same-track pairs, push for
different-track pairs, nothing for unmatched masks. Variants for the ablation: full, base (L_max
only), pull, push. `fit_codebook` writes results/{scene}/codebook/{variant}/{scale}.h5 with its
diagnostics; `paint_index_map` turns a frame's segmentation into its index map.
"""

from ccl.codebook.config import VARIANT_TERMS, CodebookConfig, variant_terms
from ccl.codebook.data import CodebookInputs, load_inputs
from ccl.codebook.fit import diagnostics_path, fit_codebook, loss_plot_path
from ccl.codebook.index_maps import iter_index_maps
from ccl.codebook.ops import paint_index_map
from ccl.codebook.train import LossTerms, TrainResult, train_prototypes
from ccl.io.codebook_h5 import CodebookFile, read_codebook

__all__ = [
    "VARIANT_TERMS",
    "CodebookConfig",
    "CodebookFile",
    "CodebookInputs",
    "LossTerms",
    "TrainResult",
    "diagnostics_path",
    "fit_codebook",
    "iter_index_maps",
    "load_inputs",
    "loss_plot_path",
    "paint_index_map",
    "read_codebook",
    "train_prototypes",
    "variant_terms",
]
