"""Helpers for the end-to-end browser test: JupyterLab on localhost, headless Chromium driven by Playwright.

Everything here is bounded in time (a ``Deadline`` feeds every wait) and cleans up after itself: the
JupyterLab server runs in its own process group and is shut down through its REST API, then SIGTERM/SIGKILL
of its group and of its kernels' groups; Chromium runs with a fresh temporary profile and any process still
holding that profile after Playwright stops is killed by pid.

Only the system Chromium is used (``/usr/bin/chromium`` from Debian's ``chromium`` package; ``$LREID_CHROMIUM``
overrides), with the Playwright Python client (``pip install playwright``; never ``playwright install``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

INSTALL_HINT = ("apt-get update && apt-get install -y chromium fonts-dejavu-core && pip install playwright "
                "(the project's .ci/run does this; never `playwright install`)")

# Chromium on a closed, shared, screenless machine: no sandbox (root), no GPU, no calls home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]

# JupyterLab user settings for a deterministic headless session.
LAB_SETTINGS = {
    # no news feed, no "would you like to receive official Jupyter news?" toast, no update check
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # every cell attached to the DOM, so all prompts and outputs can be read without scrolling
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # the served copy is never written back while the test runs
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


class Timeout(AssertionError):
    """A bounded wait ran out."""


@dataclass
class Deadline:
    """A wall-clock budget shared by every wait of one test module."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def cap(self, seconds: float) -> float:
        """``seconds``, or less if the overall budget ends sooner (never below 1 s)."""
        return max(1.0, min(seconds, self.left()))

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; raise ``Timeout`` naming ``what`` otherwise."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise Timeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_executable() -> str:
    """Path of the system Chromium, or a clear ``RuntimeError`` telling how to install it."""
    path = os.environ.get("LREID_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"no Chromium at {path!r}; install Debian's chromium: {INSTALL_HINT}")
    return path


# ---- processes --------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; empty where /proc is missing)."""
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    todo, found = [pid], []
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _pids_with_arg(arg: str) -> list[int]:
    """Processes whose command line contains ``arg`` (used with our own unique temp paths only)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if arg in cmd and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:                                              # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM each pid's process group (or the pid), wait up to ``grace`` s, then SIGKILL what is left."""
    def send(pid: int, sig: int) -> None:
        try:
            if os.getpgid(pid) == pid:                # a group leader (started with a new session): its group
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    pids = [p for p in pids if _alive(p)]
    for pid in pids:
        send(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            send(pid, signal.SIGKILL)


# ---- JupyterLab ------------------------------------------------------------------------------------------
class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with a random token and a free port, serving a temp copy of notebooks.

    The server (and so every kernel, through the ``python3`` native kernel spec = this interpreter) inherits
    ``env``; its Jupyter config, data, runtime, settings and workspace folders are private temp folders, so no
    user configuration leaks in and nothing outside ``workdir`` is written.
    """

    def __init__(self, notebooks: list[Path], workdir: Path, env: dict[str, str], log_path: Path):
        self.workdir = workdir
        self.root = workdir / "notebooks"
        self.root.mkdir(parents=True)
        for nb in notebooks:                       # a copy: the repository's output-free notebooks stay untouched
            shutil.copy2(nb, self.root / nb.name)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = dict(env)
        jdirs = {k: workdir / v for k, v in (("JUPYTER_CONFIG_DIR", "jconfig"), ("JUPYTER_DATA_DIR", "jdata"),
                                             ("JUPYTER_RUNTIME_DIR", "jruntime"),
                                             ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
                                             ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
                                             ("IPYTHONDIR", "ipython"))}
        for key, path in jdirs.items():
            path.mkdir()
            self.env[key] = str(path)
        self.env.pop("JUPYTER_TOKEN", None)
        self.env["PYTHONUNBUFFERED"] = "1"
        for plugin, values in LAB_SETTINGS.items():
            f = jdirs["JUPYTERLAB_SETTINGS_DIR"] / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._kernel_pids: set[int] = set()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "jupyterlab",
                "--no-browser", "--ServerApp.open_browser=False",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.terminals_enabled=False",
                "--ServerApp.shutdown_no_activity_timeout=900",   # a last resort if this process is killed hard
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--KernelSpecManager.ensure_native_kernel=True",
                *(["--ServerApp.allow_root=True"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]

    def start(self, timeout: float) -> None:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode} before serving; "
                                   f"log:\n{self.log_tail()}")
            try:
                return self.api("/api/status", timeout=2)
            except (OSError, urllib.error.URLError, ValueError):
                return None

        try:
            wait_until(ready, timeout, f"JupyterLab at {self.base}/api/status")
        except Timeout as exc:
            raise Timeout(f"{exc}; log:\n{self.log_tail()}") from None

    def api(self, path: str, method: str = "GET", timeout: float = 5):
        sep = "&" if "?" in path else "?"
        req = urllib.request.Request(f"{self.base}{path}{sep}token={self.token}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else {}

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def kernel_state(self, notebook: str) -> str | None:
        """The execution state of the kernel of ``notebook``'s session (``idle``, ``busy``, ...), or None."""
        try:
            sessions = self.api("/api/sessions")
        except (OSError, urllib.error.URLError, ValueError):
            return None
        for s in sessions:
            if Path(s.get("path", "")).name == notebook and s.get("kernel"):
                return s["kernel"].get("execution_state")
        return None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server and its kernels on every path: REST shutdown, then the process groups."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                kids = descendants(self.proc.pid)       # kernels run in their own sessions: remember them
                self._kernel_pids.update(kids)
                try:
                    self.api("/api/shutdown", method="POST", timeout=5)
                except Exception:                      # noqa: BLE001 - fall through to signals
                    pass
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            kill_pids([self.proc.pid], grace=5)
            kill_pids(sorted(self._kernel_pids), grace=3)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        finally:
            if self._log:
                self._log.close()


# ---- Chromium --------------------------------------------------------------------------------------------
class Browser:
    """Headless system Chromium with a fresh profile, driven by Playwright's sync API."""

    def __init__(self, profile_dir: Path, viewport=(1400, 1000)):
        self.profile_dir = profile_dir
        self.viewport = viewport
        self._pw_cm = None
        self.pw = None
        self.context = None

    def start(self, timeout: float):
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            raise RuntimeError(f"the Playwright Python client is not installed ({exc}): {INSTALL_HINT}") from None
        exe = chromium_executable()
        self._pw_cm = sync_playwright()
        self.pw = self._pw_cm.start()
        try:
            self.context = self.pw.chromium.launch_persistent_context(
                str(self.profile_dir), executable_path=exe, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": self.viewport[0], "height": self.viewport[1]}, timeout=timeout * 1000)
        except Exception as exc:                       # noqa: BLE001 - re-raised with the install hint
            raise RuntimeError(f"Chromium ({exe}) did not start under Playwright: {exc}\n{INSTALL_HINT}") from None
        return self.context

    def stop(self) -> None:
        try:
            if self.context is not None:
                try:
                    self.context.close()
                except Exception:                      # noqa: BLE001 - the browser may already be gone
                    pass
        finally:
            try:
                if self._pw_cm is not None:
                    self._pw_cm.__exit__(None, None, None)
            finally:
                # anything still holding our private profile is ours: kill it by pid
                kill_pids(_pids_with_arg(str(self.profile_dir)), grace=2)


# ---- JupyterLab page helpers -----------------------------------------------------------------------------
PROMPT = ".jp-CodeCell .jp-InputArea-prompt"
ERROR_OUTPUT = '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'


def prompts(page) -> list[str]:
    return [t.strip() for t in page.locator(PROMPT).all_inner_texts()]


ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b", re.MULTILINE)


def error_texts(page) -> list[str]:
    """Error outputs (tracebacks, ``SomethingError: ...``) shown in any cell, and widgets that failed to render.

    Plain stderr such as warnings or progress bars is not an error."""
    errors = [t for t in page.locator(ERROR_OUTPUT).all_inner_texts() if ERROR_LINE.search(t)]
    errors += [t for t in page.locator(".jp-OutputArea-output").all_inner_texts()
               if "Error displaying widget" in t or "Failed to display" in t]
    return errors


def open_notebook(page, lab: JupyterLab, name: str, n_cells: int, deadline: Deadline) -> None:
    """Open ``name`` in JupyterLab and wait until every cell is in the DOM and the kernel is idle."""
    page.goto(lab.url(name), timeout=deadline.cap(120) * 1000)
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible", timeout=deadline.cap(120) * 1000)
    wait_until(lambda: page.locator(".jp-NotebookPanel .jp-Cell").count() == n_cells, deadline.cap(60),
               f"{name}: {n_cells} cells in the DOM")
    wait_until(lambda: lab.kernel_state(name) == "idle", deadline.cap(120), f"{name}: kernel idle after start")


def run_all_cells(page) -> None:
    """Run > Run All Cells, through the menu bar as a person would."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^\s*Run\s*$")).click()
    item = page.locator(".lm-Menu-item", has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")))
    item.first.click()


def wait_all_executed(page, lab: JupyterLab, name: str, timeout: float) -> list[str]:
    """Wait until every code cell shows an execution count and the kernel is idle; fail early on an error."""
    def done():
        errs = error_texts(page)
        if errs:
            raise AssertionError(f"{name}: a cell failed while running all cells:\n{errs[0][-3000:]}")
        p = prompts(page)
        return p if p and all(re.fullmatch(r"\[\d+\]:", x) for x in p) and lab.kernel_state(name) == "idle" else None

    try:
        return wait_until(done, timeout, f"{name}: all cells executed", interval=1.0)
    except Timeout as exc:
        raise Timeout(f"{exc}; prompts now: {prompts(page)}") from None


def img_src(locator) -> str:
    """The ``src`` of the first <img> under ``locator`` ('' while there is none)."""
    img = locator.locator("img").first
    return (img.get_attribute("src") or "") if img.count() else ""


def settled_img(locator, lab: JupyterLab, notebook: str, timeout: float, differs_from: str | None = None,
                quiet: float = 1.5) -> str:
    """Wait until the figure under ``locator`` differs from ``differs_from`` (if given), the kernel is idle and
    the image has not changed for ``quiet`` seconds; return its ``src``. A timeout names every image seen."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        src = img_src(locator)
        if src != last:
            last, since = src, time.monotonic()
            seen.append(hashlib.sha1(src.encode()).hexdigest()[:8] if src else "(none)")
        stable = time.monotonic() - since >= quiet
        if src and src != differs_from and stable and lab.kernel_state(notebook) == "idle":
            return src
        if time.monotonic() >= end:
            old = hashlib.sha1(differs_from.encode()).hexdigest()[:8] if differs_from else None
            raise Timeout(f"timed out after {timeout:.0f} s waiting for a new, settled figure; images seen: "
                          f"{seen} (old: {old}), kernel {lab.kernel_state(notebook)}")
        time.sleep(0.25)


# ---- saving and reopening a notebook (notebook 05's reopen case) -------------------------------------------
def save_notebook(page, lab: JupyterLab, name: str, timeout: float) -> dict:
    """Ctrl+S in the notebook (command mode), then wait until the served file changed on disk; returns it."""
    path = lab.root / name
    before = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    wait_until(lambda: path.stat().st_mtime_ns != before, timeout, f"{name} to be saved", interval=0.3)
    time.sleep(0.5)                                    # the contents manager writes atomically; let it settle
    return json.loads(path.read_text())


def shutdown_kernel(lab: JupyterLab, name: str) -> None:
    """Delete ``name``'s session (its kernel stops), as when a notebook is closed and opened another day."""
    for s in lab.api("/api/sessions"):
        if Path(s.get("path", "")).name == name:
            lab.api(f"/api/sessions/{s['id']}", method="DELETE")
    wait_until(lambda: lab.kernel_state(name) is None, 30, f"{name}: its session to end")
