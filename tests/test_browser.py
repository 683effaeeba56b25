"""The drawing path in a real browser: JupyterLab + notebook 06, and ``mars-lite demo`` (Voilà).

Debian's chromium is driven through Playwright's sync API (never ``playwright install``). Each test
starts its server on 127.0.0.1 with a free port and throw-away Jupyter config/data/runtime folders,
draws one stroke on the sketch pad with real mouse events, and reads from the page that the kernel
received it (the pad's stroke count) and that the results changed (the panel's results signature and
photos); then clicks "yes" under a photo and sees the tile marked and the results refined, and "reset
feedback" bring back the sketch's own results. Every server is stopped with its process group, and its kernels with it.
"""
from __future__ import annotations

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
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "06_live_sketch_query.ipynb"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
if CHROMIUM is None:
    if os.environ.get("CI"):  # CI installs it (bash .ci/setup --browser): there the tests must run
        pytest.fail("Debian's chromium is not installed: run 'bash .ci/setup --browser'", pytrace=False)
    pytest.skip("Debian's chromium is not installed ('bash .ci/setup --browser' installs it); the browser tests "
                "need it", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jupyter_env(tmp: Path) -> dict:
    """Environment that keeps Jupyter away from the user's settings and runs the kit in fast mode."""
    env = dict(os.environ)
    for name in ("config", "data", "runtime", "ipython"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), IPYTHONDIR=str(tmp / "ipython"),
               MARS_LITE_FAST="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1", JUPYTER_PLATFORM_DIRS="1")
    env.pop("MARS_LITE_DATA", None)  # the built-in data, as a user's first start has it
    return env


class Server:
    """A server process in its own process group; ``stop()`` ends it and every process it started."""

    def __init__(self, cmd: list[str], env: dict, log: Path, cwd: Path):
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return
            except urllib.error.HTTPError as err:  # any answer below 500 means the server is up
                if err.code < 500:
                    return
                time.sleep(0.5)
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)  # kernels run in own sessions
        except psutil.NoSuchProcess:
            children = []
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self._log_file.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _start(request, cmd, env, tmp, url, timeout=90.0) -> Server:
    server = Server(cmd, env, tmp / "server.log", cwd=tmp)
    request.addfinalizer(server.stop)
    server.wait_http(url, timeout)
    return server


def _draw_and_check(page, server: Server) -> None:
    """Clear the pad, draw one stroke with the mouse and check the kernel's answer in the page."""
    from playwright.sync_api import expect

    count, signature = page.locator(".mars-stroke-count"), page.locator(".mars-results-signature")
    page.locator(".widget-button", has_text="clear").first.click()
    expect(count).to_have_text("strokes: 0", timeout=30_000)
    expect(signature).to_have_text("results: none", timeout=30_000)
    canvas = page.locator(".mars-sketch-canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 100, f"canvas not laid out: {box}"
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + 0.25 * w, y0 + 0.3 * h)
    page.mouse.down()
    for i in range(1, 25):  # a zig-zag across the pad, as a hand would draw it
        page.mouse.move(x0 + (0.25 + 0.5 * i / 24) * w, y0 + (0.3 + 0.4 * (i % 2)) * h, steps=2)
    page.mouse.up()
    expect(count).to_have_text("strokes: 1", timeout=30_000)
    try:
        expect(signature).to_have_text(re.compile(r"results: [0-9a-f]{12} \(query #\d+\)"),
                                       timeout=60_000)
    except AssertionError:
        status = page.locator(".mars-results-status").first.inner_text()
        raise AssertionError(f"no results after the stroke; panel says {status!r}; server log:\n"
                             f"{server.log.read_text()[-2000:]}") from None
    sources = page.locator(".mars-results-grid img").evaluate_all("els => els.map(e => e.src)")
    assert len(sources) == 10 and all(src.startswith(("blob:", "data:")) for src in sources), sources


def _mark_and_check(page, server: Server) -> None:
    """Click "yes" under the last photo: the tile shows the mark and the results change; "reset
    feedback" brings back the sketch's own results."""
    from playwright.sync_api import expect

    signature, status = page.locator(".mars-results-signature"), page.locator(".mars-feedback-status")
    hashed = re.compile(r"results: ([0-9a-f]{12}) ")
    sketch = hashed.match(signature.first.inner_text()).group(1)
    page.locator(".mars-results-grid .mars-mark-yes").nth(9).click()
    try:
        expect(status).to_have_text("refined from 1 yes / 0 no", timeout=30_000)
    except AssertionError:
        raise AssertionError(f"no refined results after the click; the page says {status.first.inner_text()!r} / "
                             f"{page.locator('.mars-results-status').first.inner_text()!r}; server log:\n"
                             f"{server.log.read_text()[-2000:]}") from None
    expect(page.locator(".mars-results-grid .mars-tile-yes")).to_have_count(1, timeout=10_000)
    expect(page.locator(".mars-results-grid .mars-tile-no")).to_have_count(0)
    expect(signature).not_to_have_text(re.compile(f"results: {sketch} "), timeout=10_000)
    page.locator(".mars-feedback-reset").first.click()
    expect(signature).to_have_text(re.compile(f"results: {sketch} "), timeout=30_000)
    expect(page.locator(".mars-results-grid .mars-tile-yes")).to_have_count(0, timeout=10_000)


def test_drawing_in_jupyterlab_reaches_the_kernel(browser, request, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # the lab autosaves: never into the repository
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    server = _start(request, cmd, _jupyter_env(tmp_path), tmp_path,
                    f"http://127.0.0.1:{port}/api/status?token={token}")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").first.wait_for(timeout=60_000)  # kernel connected
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").first.click()
    # the notebook's last cell prints the empty pad's signature once everything above has run
    done = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']",
                        has_text="results: none")
    try:
        done.first.wait_for(timeout=150_000)
    except Exception:  # noqa: BLE001 - report what the page shows instead of a bare timeout
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        raise AssertionError(f"notebook 06 did not finish; errors: {errors.all_inner_texts()[:3]}; "
                             f"log:\n{server.log.read_text()[-2000:]}") from None
    _draw_and_check(page, server)
    _mark_and_check(page, server)
    page.close()


def test_drawing_in_the_voila_demo_reaches_the_kernel(browser, request, tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "mars_lite.cli", "demo", "--port", str(port)]
    server = _start(request, cmd, _jupyter_env(tmp_path), tmp_path, f"http://127.0.0.1:{port}/mars-lite-probe",
                    timeout=60.0)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
    page.locator(".mars-sketch-canvas").first.wait_for(timeout=120_000)
    _draw_and_check(page, server)
    _mark_and_check(page, server)
    page.close()
