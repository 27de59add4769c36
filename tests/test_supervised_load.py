"""`make run`'s supervision under load: 500 orders through the web while the worker is killed.

The app runs as `make run` runs it: supervisord with supervisord.conf (gunicorn and runworker),
on free ports and a database of its own. Orders are posted through the order form by several
clients at once; meanwhile the worker (runworker, with the embedded sidecar in it) is killed
with SIGKILL twice. supervisord must bring it back by itself, the web must keep answering
(no failed post), and afterwards every order must be final with stock and ledger exact.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ORDERS = 500
CLIENTS = 8
KILL_AFTER = (120, 300)  # kill the worker once this many orders have been posted
FINAL = {"completed", "insufficient_stock", "rejected", "cancelled", "failed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class App:
    """The app under supervisord, in its own directory; `shell` reads its database."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "DJANGO_"))},
            "ORDERS_VAR_DIR": str(tmp / "var"),
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "WORKFLOW_GRPC_PORT": str(free_port()),
            "ORDER_RESCHEDULE_INTERVAL": "2",
            "MANAGER_PASSWORD": "load-test-Manager-8812",
            "CUSTOMER_PASSWORD": "load-test-Customer-8812",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        self.supervisord: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def shell(self, code: str) -> object:
        return json.loads(self.manage("shell", "-v", "0", "-c", code).strip().splitlines()[-1])

    def start(self) -> None:
        log = self.tmp / "supervisord.log"
        self.supervisord = subprocess.Popen(
            [
                str(BIN / "supervisord"),
                "-c",
                "supervisord.conf",
                "-l",
                str(log),
                "-j",
                str(self.tmp / "supervisord.pid"),
                "-q",
                str(self.tmp),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=(self.tmp / "out.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.web_answers, 60, "the web server")
        wait_for(lambda: self.worker_pid() is not None, 60, "the worker")

    def stop(self) -> None:
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.send_signal(signal.SIGTERM)
            try:
                self.supervisord.wait(60)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(self.supervisord.pid).children(recursive=True):
                    child.kill()
                self.supervisord.kill()

    def web_answers(self) -> bool:
        try:
            return requests.get(self.url + "/", timeout=10).status_code < 500
        except requests.RequestException:
            return False

    def worker_pid(self) -> int | None:
        """runworker's main process (its children carry --child)."""
        assert self.supervisord is not None
        for proc in psutil.Process(self.supervisord.pid).children():
            try:
                cmdline = proc.cmdline()
            except psutil.Error:  # just killed: a zombie until supervisord reaps it
                continue
            if "runworker" in cmdline and "--child" not in " ".join(cmdline):
                return proc.pid
        return None


@pytest.fixture
def app(tmp_path: Path):
    app = App(tmp_path)
    app.manage("migrate", "--noinput")
    app.manage("seed")
    app.shell(
        "from orders.models import InventoryItem; import json; "
        "InventoryItem.objects.create(name='Widget', unit_cost=2, on_hand=1500); "
        "print(json.dumps(1))"
    )
    app.start()
    try:
        yield app
    finally:
        app.stop()


def stock_and_orders(app: App) -> dict:
    return app.shell(
        "import json\n"
        "from orders.models import InventoryItem, Order, LedgerEntry\n"
        "items = {i.name: [i.on_hand, i.reserved, i.sold] for i in InventoryItem.objects.all()}\n"
        "orders = {o.id: o.status for o in Order.objects.all()}\n"
        "ledger = [[e.order_id, e.step] for e in LedgerEntry.objects.all()]\n"
        "print(json.dumps({'items': items, 'orders': orders, 'ledger': ledger}))"
    )


def logged_in_session(app: App) -> requests.Session:
    """A browser-like session: logs in as the demo customer when the form asks for it."""
    session = requests.Session()
    page = session.get(app.url + "/", timeout=30)
    if "password" in page.text.lower() and "login" in page.url:
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf, "no CSRF token on the login page"
        answer = session.post(
            page.url,
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "username": "customer",
                "password": app.env["CUSTOMER_PASSWORD"],
            },
            headers={"Referer": page.url},
            timeout=30,
        )
        assert answer.status_code == 200 and "login" not in answer.url, answer.text[:500]
    return session


def place_order(app: App, session: requests.Session, item_id: int, quantity: int) -> int:
    form = session.get(app.url + "/", timeout=30)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    token = re.search(r'name="form_token" value="([^"]+)"', form.text)
    assert csrf and token, form.text[:500]
    answer = session.post(
        app.url + "/",
        data={
            "csrfmiddlewaretoken": csrf.group(1),
            "form_token": token.group(1),
            "item": str(item_id),
            "quantity": str(quantity),
        },
        headers={"Referer": app.url + "/"},
        timeout=30,
        allow_redirects=False,
    )
    return answer.status_code


def test_500_orders_survive_two_worker_kills(app: App) -> None:
    before = stock_and_orders(app)
    items = app.shell(
        "import json; from orders.models import InventoryItem; "
        "print(json.dumps({i.name: i.pk for i in InventoryItem.objects.all()}))"
    )
    widget = items["Widget"]

    posted = 0
    failures: list[str] = []
    lock = threading.Lock()
    kills: list[int] = []

    def client(n: int) -> None:
        nonlocal posted
        session = logged_in_session(app)
        for i in range(n, ORDERS, CLIENTS):
            try:
                status = place_order(app, session, widget, 1 + i % 3)
            except requests.RequestException as error:
                status, detail = 0, repr(error)
            else:
                detail = f"HTTP {status}"
            with lock:
                posted += 1
                if status != 302:
                    failures.append(detail)

    def killer() -> None:
        for threshold in KILL_AFTER:
            wait_for(lambda t=threshold: posted >= t, 300, f"{threshold} posts")
            pid = app.worker_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            kills.append(pid)
            # supervisord starts a new runworker by itself.
            wait_for(lambda p=pid: app.worker_pid() not in (None, p), 60, "the worker's restart")

    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        done = [pool.submit(client, n) for n in range(CLIENTS)]
        killed = pool.submit(killer)
        for future in done:
            future.result()
        killed.result()

    print(f"\nposted {posted} orders, {len(failures)} failed; worker killed {len(kills)} times")
    assert failures == []
    assert len(kills) == 2

    def all_final() -> bool:
        return all(s in FINAL for s in stock_and_orders(app)["orders"].values())

    wait_for(all_final, 300, "every order to be final")
    after = stock_and_orders(app)
    orders = after["orders"]
    assert len(orders) == ORDERS
    completed = {oid for oid, status in orders.items() if status == "completed"}
    print(f"{len(completed)} completed, statuses {sorted(set(orders.values()))}")
    assert len(completed) == ORDERS  # 1,500 widgets cover the at most 1,000 ordered

    # Stock conserved: free + reserved + sold per item as before, nothing left reserved.
    for name, (on_hand, reserved, sold) in after["items"].items():
        assert on_hand + reserved + sold == sum(before["items"][name]), name
        assert reserved == 0, name
    # The ledger: each completed order reserved, paid and sold exactly once.
    steps: dict[str, list[str]] = {}
    for order_id, step in after["ledger"]:
        steps.setdefault(order_id, []).append(step)
    for order_id in completed:
        assert sorted(steps[order_id]) == sorted(["reserve", "payment", "deduct"]), order_id
