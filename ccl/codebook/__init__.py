"""Contrastive codebook learning (paper 3.3 step 2, eq. 4–8) and index maps.

N prototypes T on the unit sphere (T = W / ||W||); each mask's feature F_i selects its nearest
prototype j*(i) = argmax_j cos(F_i, T_j) (eq. 4); L = L_max + λ_pull·L_pull + λ_push·L_push (eq. 8) with
L_max = mean 1 − cos(F_i, T_j*) (eq. 5), L_pull = 1 − cos(T_j*(i), T_j*(k)) for same-track pairs (eq. 6),
L_push = ReLU(cos(T_j*(i), T_j*(k)) − m) for different-track pairs (eq. 7), nothing for unmatched
masks. Variants for the ablation: full, base (L_max only), pull, push. Pairs are drawn in fixed-size
batches (`ops.PairSampler`), so memory never grows with M².

The gradient of j* (config `assignment`). Every loss value uses the hard argmax. With the hard
argmax's gradient alone, a pair term moves only the two selected prototypes, along their geodesic;
the prototype holding a mask stays between the mask and the partner's prototype, so no mask ever
changes prototype because of pull or push: a track that k-means split over several prototypes stays
split (its prototypes become near-duplicates; measured: tracks on one prototype 0.0 → 0.0, and the
share of a track's masks on its commonest prototype drops). The default `straight_through` adds the
gradient of the soft assignment softmax(cos / temperature) with prototype values held fixed: a
prototype is drawn towards the masks its pair partners agree with, so pull can hand a track's masks to
one prototype (tests/codebook/test_train.py: 0.0 → ≥ 0.8 of tracks on one prototype where base splits
them all). A track made of two distinct, tight clusters still keeps two prototypes (no local move
merges them); pull then makes those two prototypes alike.

`fit_codebook` writes results/{scene}/seed{N}/codebook/{variant}/{scale}.h5 with its diagnostics;
`paint_index_map` turns a frame's segmentation into its index map.
"""

from ccl.codebook.config import VARIANT_TERMS, CodebookConfig, variant_terms
from ccl.codebook.data import CodebookInputs, load_inputs
from ccl.codebook.fit import diagnostics_path, fit_codebook, loss_plot_path
from ccl.codebook.index_maps import FrameIndexMaps, iter_index_maps
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
    "FrameIndexMaps",
    "iter_index_maps",
    "load_inputs",
    "loss_plot_path",
    "paint_index_map",
    "read_codebook",
    "train_prototypes",
    "variant_terms",
]
