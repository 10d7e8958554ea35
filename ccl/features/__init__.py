"""Features (paper 3.2, eq. 3): a CLIP embedding per mask, and text embeddings of queries.

`extract_features(scene, masks_path, *, cfg, out_path, device, seed)` writes
results/{scene}/features/{scale}.h5 (docs/contracts.md "Features"); `encode_text(queries, *, cfg)`
embeds queries with the same model. Backends `open_clip` and `sim` (synthetic scenes).
"""

from ccl.features.config import FeaturesConfig
from ccl.features.extract import encode_text, extract_features

__all__ = ["FeaturesConfig", "encode_text", "extract_features"]
