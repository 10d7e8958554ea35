"""Files: atomic writes, the HDF5 layouts of every stage, checkpoints and hashes.

Every layout is defined once here, carries a `format_version` and the parameters and model that made
it, and is written under a temporary name and renamed, so that a killed run never leaves a file that a
later run would trust.
"""

from ccl.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from ccl.io.checkpoint import load_safetensors, load_torch_weights, save_safetensors
from ccl.io.h5 import H5FormatError, open_h5_for_read, write_h5
from ccl.io.hashing import file_sha256

__all__ = [
    "H5FormatError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_sha256",
    "load_safetensors",
    "load_torch_weights",
    "open_h5_for_read",
    "save_safetensors",
    "write_h5",
]
