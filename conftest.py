"""Test session defaults: notebooks run in the smoke profile, the synthetic benchmark goes to a temp cache.

The environment is inherited by the nbval kernels, so notebooks see the same settings.
"""
import os
import tempfile

os.environ.setdefault("LREID_PROFILE", "smoke")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # idle OpenMP threads sleep instead of spinning on 2 cores
os.environ.setdefault("LREID_CACHE", tempfile.mkdtemp(prefix="lreid-test-cache-"))
