"""CCL-LGS: contrastive codebook learning for 3D language Gaussian splatting.

`import ccl` stays light: heavy libraries (torch, segment-anything, sam2, open_clip, gsplat) are
imported inside the stage or backend module that needs them.
"""

__version__ = "0.1.0"
