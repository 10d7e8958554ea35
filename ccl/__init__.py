"""CCL-LGS: contrastive codebook learning for 3D language Gaussian splatting.

`import ccl` stays light: heavy libraries (torch, segment-anything, sam2, open_clip, gsplat) are
imported inside the stage or backend module that needs them.
"""

__version__ = "0.1.0"

import os as _os

# =1: every tensor ccl makes off the data's device fails where it meets the data, on a CPU too (a
# developers' check, ccl/host_tensor_guard.py; the real-path DAG test runs under it)
HOST_TENSOR_GUARD_ENV = "CCL_HOST_TENSOR_GUARD"
if _os.environ.get(HOST_TENSOR_GUARD_ENV) == "1":
    from ccl.host_tensor_guard import enable_for_this_process

    enable_for_this_process()
