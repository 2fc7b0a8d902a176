"""Test session defaults: notebooks run in the smoke profile, and every temporary file of the session (the
synthetic benchmark cache, pytest's tmp_path, the notebooks' smoke runs, any ``tempfile`` folder) lives in one
session folder that is removed at the end, so a test run leaves /tmp as it found it.

The environment is inherited by the nbval kernels and by subprocesses, so they use the same settings and folder.
"""
import os
import shutil
import tempfile
from pathlib import Path

SYSTEM_TMP = Path(tempfile.gettempdir())
BEFORE = set(SYSTEM_TMP.glob("lreid-*"))
SESSION_TMP = Path(tempfile.mkdtemp(prefix="lreid-pytest-"))
os.environ["TMPDIR"] = str(SESSION_TMP)              # kernels and subprocesses create their temp files here
tempfile.tempdir = str(SESSION_TMP)                  # and so does this process
os.environ.setdefault("LREID_PROFILE", "smoke")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # idle OpenMP threads sleep instead of spinning on 2 cores
os.environ.setdefault("LREID_CACHE", str(SESSION_TMP / "cache"))


def pytest_sessionfinish(session, exitstatus):
    """Remove the session folder, then fail the run if the system temp folder gained an ``lreid-*`` entry anyway
    (something wrote around ``TMPDIR``): nothing a test made outlives the run."""
    shutil.rmtree(SESSION_TMP, ignore_errors=True)
    if left := sorted(str(p) for p in set(SYSTEM_TMP.glob("lreid-*")) - BEFORE):
        print(f"\nthe test run left {len(left)} lreid-* entries in {SYSTEM_TMP}: {', '.join(left[:5])}")
        session.exitstatus = 1
