"""Run as a script by tests/cuda/test_cuda_messages.py, in a process of its own: gsplat's CUDA build made to
fail (its `_backend` module cannot be imported) before gsplat was ever imported, which a test process that
has already imported gsplat cannot undo. Prints ccl's message and exits 0 when ensure_gsplat_cuda refused.

    python tests/cuda/failed_gsplat_build.py CUDA_HOME
"""

from __future__ import annotations

import sys


def main(cuda_home: str) -> int:
    sys.modules["gsplat.cuda._backend"] = None  # `from gsplat.cuda import _backend` raises ImportError
    import torch.utils.cpp_extension

    torch.utils.cpp_extension.CUDA_HOME = cuda_home  # a toolkit that passes ccl's checks before the build
    from ccl.splat._gsplat import ensure_gsplat_cuda

    try:
        ensure_gsplat_cuda()
    except RuntimeError as e:
        print(e)
        return 0
    print("ensure_gsplat_cuda did not refuse")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
