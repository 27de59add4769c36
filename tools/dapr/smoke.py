"""Smoke test of the app on real daprd (`make dapr-smoke`): exits non-zero on any failure.

Starts Redis, placement and scheduler (tools/dapr/services.sh), runs dapr.yaml with the Dapr CLI
(`dapr run -f .`; tools/dapr/run_file.py when there is no CLI or with --runner), then acts as a browser would on http://127.0.0.1:8000: places a small order
and waits for it to complete; places a large one (over ORDER_APPROVAL_THRESHOLD, set low here),
sees it await approval, approves it as the manager through the admin, and waits for it to
complete. Stops everything it started, also on failure.

The Django database and secret key live in a temporary ORDERS_VAR_DIR, so the smoke neither
needs nor touches the developer's var/ database; workflow state goes to the shared Redis.
"""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
BASE_URL = "http://127.0.0.1:8000"
MANAGER_PASSWORD = "smoke-Manager-7f3c9a"
CUSTOMER_PASSWORD = "smoke-Customer-2d8e4b"  # `manage.py seed` creates the `customer` account
APPROVAL_THRESHOLD = "100"  # dollars: 50 paperclips ($250) need approval, 1 ($5) does not


class SmokeFailure(Exception):
    pass


def run_command(*, use_runner: bool) -> list[str]:
    """`dapr run -f .` with the CLI `make dapr` lays out (or one on PATH); without a CLI, or with
    --runner, tools/dapr/run_file.py, which runs dapr.yaml the same way."""
    runtime_path = os.environ.get("DAPR_RUNTIME_PATH")
    laid_out = (Path(runtime_path) if runtime_path else Path.home()) / ".dapr" / "bin" / "dapr"
    cli = str(laid_out) if laid_out.exists() else shutil.which("dapr")
    if use_runner or cli is None:
        return [str(PYTHON), str(ROOT / "tools" / "dapr" / "run_file.py"), "."]
    return [cli, "run", "-f", "."]


class Browser:
    """Cookies and CSRF tokens, as a browser keeps them between pages."""

    def __init__(self) -> None:
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(BASE_URL + path, timeout=10) as response:
            return response.geturl(), response.read().decode()

    def post(self, path: str, fields: dict[str, str | list[str]]) -> tuple[str, str]:
        data = urllib.parse.urlencode(fields, doseq=True).encode()
        request = urllib.request.Request(
            BASE_URL + path, data=data, headers={"Referer": BASE_URL + path}
        )
        with self.opener.open(request, timeout=10) as response:
            return response.geturl(), response.read().decode()


def hidden_value(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    if match is None:
        raise SmokeFailure(f"no {name} field on the page")
    return html.unescape(match.group(1))


def log_in_if_asked(browser: Browser, url: str, page: str, username: str, password: str) -> str:
    """Send the login form when ``page`` (at ``url``) is one; returns the page it leads to."""
    if 'name="password"' not in page:
        return page
    path = urllib.parse.urlsplit(url)
    url, page = browser.post(
        path.path + (f"?{path.query}" if path.query else ""),
        {
            "csrfmiddlewaretoken": hidden_value(page, "csrfmiddlewaretoken"),
            "username": username,
            "password": password,
            "next": urllib.parse.parse_qs(path.query).get("next", ["/"])[0],
        },
    )
    if 'name="password"' in page:
        raise SmokeFailure(f"{username} could not log in at {url}")
    return page


def order_place(browser: Browser, *, quantity: int) -> str:
    """Fill in and send the order form (logged in as the customer when the site asks for it);
    returns the order's id from the page it redirects to."""
    url, page = browser.get("/")
    log_in_if_asked(browser, url, page, "customer", CUSTOMER_PASSWORD)
    _, page = browser.get("/")
    # Paperclips: $5 each, 100 in stock, so both orders below fit the seed inventory.
    # An <option> of the item list, or the radio button of an item card.
    item = re.search(r'value="(\d+)"[^>]*>\s*(?:<span class="item-name">)?Paperclip\b', page)
    if item is None:
        raise SmokeFailure("the order form does not list the seed's Paperclip")
    url, _ = browser.post(
        "/",
        {
            "csrfmiddlewaretoken": hidden_value(page, "csrfmiddlewaretoken"),
            "form_token": hidden_value(page, "form_token"),
            "item": item.group(1),
            "quantity": str(quantity),
        },
    )
    match = re.search(r"/orders/([^/]+)/$", url)
    if match is None:
        raise SmokeFailure(f"placing an order of {quantity} did not lead to its page (at {url})")
    return match.group(1)


def order_status(browser: Browser, order_id: str) -> str:
    _, page = browser.get(f"/orders/{order_id}/")
    # The status element's class names the status: "status status-<s>" or "badge badge-<s>".
    match = re.search(r'data-testid="status" class="[a-z]+ [a-z]+-([a-z_]+)"', page)
    if match is None:
        raise SmokeFailure(f"order {order_id}: its page shows no status")
    return match.group(1)


def wait_for_status(browser: Browser, order_id: str, wanted: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    status = ""
    while time.monotonic() < deadline:
        status = order_status(browser, order_id)
        if status == wanted:
            print(f"smoke: order {order_id} is {wanted}")
            return
        time.sleep(0.5)
    raise SmokeFailure(f"order {order_id} is {status!r} after {seconds:.0f}s, not {wanted!r}")


def manager_approve(order_id: str) -> None:
    """Log in to the admin as the manager and run the "Approve selected orders" action."""
    admin = Browser()
    _, page = admin.get("/admin/login/?next=/admin/")
    url, _ = admin.post(
        "/admin/login/?next=/admin/",
        {
            "csrfmiddlewaretoken": hidden_value(page, "csrfmiddlewaretoken"),
            "username": "manager",
            "password": MANAGER_PASSWORD,
            "next": "/admin/",
        },
    )
    if "/admin/login/" in url:
        raise SmokeFailure("the manager could not log in to the admin")
    _, page = admin.get("/admin/orders/order/")
    _, result = admin.post(
        "/admin/orders/order/",
        {
            "csrfmiddlewaretoken": hidden_value(page, "csrfmiddlewaretoken"),
            "action": "approve_orders",
            "_selected_action": [order_id],
            "index": "0",
        },
    )
    if "approved" not in result.lower():
        raise SmokeFailure(f"the admin did not report approving order {order_id}")
    print(f"smoke: the manager approved order {order_id} in the admin")


def wait_for_site(app: subprocess.Popen[bytes], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise SmokeFailure(f"`dapr run -f .` exited with {app.returncode} before serving")
        try:
            urllib.request.urlopen(BASE_URL + "/", timeout=2).close()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SmokeFailure(f"nothing served {BASE_URL} within {seconds:.0f}s")


@contextmanager
def services() -> Iterator[None]:
    """Redis, placement and scheduler for the run; stopped after it unless they were running."""
    script = ROOT / "tools" / "dapr" / "services.sh"
    status = subprocess.run(["bash", str(script), "status"], capture_output=True, text=True)
    were_running = "running" in status.stdout
    subprocess.run(["bash", str(script), "start"], check=True)
    try:
        yield
    finally:
        if not were_running:
            subprocess.run(["bash", str(script), "stop"], check=False)


@contextmanager
def dapr_run(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`dapr run -f .` in its own process group; stopped as Ctrl-C would stop it."""
    print(f"smoke: {' '.join(command)}")
    with log.open("wb") as out:
        app = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield app
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGINT)
            try:
                app.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(app.pid, signal.SIGKILL)
                app.wait()


def smoke(var_dir: Path, command: list[str]) -> None:
    env = {
        **os.environ,
        "ORDERS_VAR_DIR": str(var_dir),
        "MANAGER_PASSWORD": MANAGER_PASSWORD,
        "CUSTOMER_PASSWORD": CUSTOMER_PASSWORD,
        "ORDER_APPROVAL_THRESHOLD": APPROVAL_THRESHOLD,
    }
    for manage in (["migrate", "--noinput"], ["seed"]):
        subprocess.run([str(PYTHON), "manage.py", *manage], cwd=ROOT, env=env, check=True)
    log = var_dir / "dapr-run.log"
    with services(), dapr_run(command, env, log) as app:
        try:
            wait_for_site(app)
            browser = Browser()
            small = order_place(browser, quantity=1)
            wait_for_status(browser, small, "completed")
            large = order_place(browser, quantity=50)
            wait_for_status(browser, large, "awaiting_approval")
            manager_approve(large)
            wait_for_status(browser, large, "completed")
        except Exception:
            print(f"smoke: `dapr run -f .` output follows ({log})", file=sys.stderr)
            sys.stderr.write(log.read_text(errors="replace")[-6000:])
            raise


def main(argv: list[str]) -> int:
    command = run_command(use_runner="--runner" in argv)
    var_dir = Path(tempfile.mkdtemp(prefix="dapr-smoke-"))
    try:
        smoke(var_dir, command)
    except (SmokeFailure, subprocess.CalledProcessError, urllib.error.URLError) as error:
        print(f"smoke: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    print("smoke: passed on real daprd")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
