"""lreid_core: lifelong person re-identification workbench (PatchKD, LwF, multi-head covariance)."""

__version__ = "0.1.0"
