"""seed, runworker and quickstart, run the way an operator runs them."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from orders.models import InventoryItem, Order, OrderStatus
from orders.tests.conftest import stock, timeline

BASE_DIR = Path(settings.BASE_DIR)


class TestSeed:
    def test_seed_creates_inventory_manager_and_customer_once(self, db, capsys, monkeypatch):
        monkeypatch.delenv("MANAGER_PASSWORD", raising=False)
        monkeypatch.delenv("CUSTOMER_PASSWORD", raising=False)
        call_command("seed")
        first = capsys.readouterr().out
        assert "Added Cars ($5000, 10 on hand)" in first
        assert "Created the staff account `manager` with password " in first
        password = first.split("with password ")[1].split(" ")[0]
        manager = User.objects.get(username="manager")
        assert manager.is_staff and manager.check_password(password)
        assert manager.has_perm("orders.approve_order")
        assert "Created the demo customer account `customer` with password " in first
        customer_password = first.split("`customer` with password ")[1].split(" ")[0]
        customer = User.objects.get(username="customer")
        assert not customer.is_staff and customer.check_password(customer_password)
        assert customer_password != password
        call_command("seed")
        assert capsys.readouterr().out == ""
        assert InventoryItem.objects.count() == 3

    def test_seed_takes_password_from_env(self, db, capsys, monkeypatch):
        monkeypatch.setenv("MANAGER_PASSWORD", "from-the-env-42")
        monkeypatch.setenv("CUSTOMER_PASSWORD", "customer-from-env-77")
        call_command("seed")
        out = capsys.readouterr().out
        assert "from-the-env-42" not in out and "customer-from-env-77" not in out
        assert "`customer` (password from CUSTOMER_PASSWORD)" in out
        assert User.objects.get(username="manager").check_password("from-the-env-42")
        assert User.objects.get(username="customer").check_password("customer-from-env-77")

    @pytest.mark.parametrize("password", ["123", "password", "customer1"])
    def test_seed_refuses_a_weak_customer_password_and_creates_no_account(
        self, db, capsys, monkeypatch, password
    ):
        monkeypatch.delenv("MANAGER_PASSWORD", raising=False)
        monkeypatch.setenv("CUSTOMER_PASSWORD", password)
        with pytest.raises(CommandError, match="CUSTOMER_PASSWORD is refused: "):
            call_command("seed")
        # Neither account: the manager's generated password was never shown.
        assert not User.objects.filter(username__in=["manager", "customer"]).exists()
        assert "with password" not in capsys.readouterr().out

    @pytest.mark.parametrize("password", ["123", "password", "manager1"])
    def test_seed_refuses_a_weak_password_from_env(self, db, monkeypatch, password):
        monkeypatch.setenv("MANAGER_PASSWORD", password)
        with pytest.raises(CommandError, match="MANAGER_PASSWORD is refused: "):
            call_command("seed")
        assert not User.objects.filter(username="manager").exists()


@pytest.mark.django_db(transaction=True)
def test_runworker_once_schedules_orders_that_never_got_a_workflow(tmp_path):
    cars = InventoryItem.objects.create(name="Cars", unit_cost=Decimal("5000"), on_hand=10)
    # Written while the engine was down: no workflow exists for it yet.
    order = Order.objects.create(item=cars, quantity=2, total_cost=Decimal("10000"))
    call_command(
        "runworker",
        "--processes=0",
        "--port=0",
        f"--db={tmp_path / 'workflows.db'}",
        "--once",
        "--max-seconds=60",
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.COMPLETED
    assert order.scheduled_at is not None
    assert stock(cars) == (8, 0, 2)
    assert timeline(order)[-1] == f"Order {order.id} has completed!"


# --- real processes -------------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DAPR_GRPC_PORT"}}
    env.update(
        ORDERS_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="ordersite.settings",
        MANAGER_PASSWORD="pw-manager-123",
        PYTHONUNBUFFERED="1",
        # Not the machine's Zipkin on 9411 nor daprd's metrics port 9090 (conftest.py).
        DAPR_CONFIG="",
        WORKFLOW_METRICS_PORT="off",
        **extra,
    )
    return env


def _manage(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class OutputReader:
    """Collects a process's merged output; wait_for() blocks until a line contains a text."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        while not any(text in line for line in self.lines):
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"process ended before printing {text!r}:\n{self.text}")
            self.lines.append(line)

    def drain(self) -> None:
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def fresh_site(tmp_path: Path) -> Path:
    for command in (["migrate", "--noinput"], ["seed"]):
        result = _manage(tmp_path, *command)
        assert result.returncode == 0, result.stderr
    return tmp_path


def test_runworker_processes_complete_orders_and_stop_on_sigterm(fresh_site):
    placed = _manage(
        fresh_site,
        "shell",
        "-c",
        "from orders.models import *; i = InventoryItem.objects.get(name='Cars'); "
        "print(Order.objects.create(item=i, quantity=3, total_cost=15000).id)",
    )
    order_id = placed.stdout.strip().splitlines()[-1]
    worker = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runworker",
            "--processes=2",
            "--port=0",
            "--sweep-interval=1",
        ],
        cwd=BASE_DIR,
        env=_env(fresh_site),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = OutputReader(worker)
    try:
        output.wait_for("Started 2 worker processes")
        output.wait_for(f"Order {order_id} has completed!")
        children = psutil.Process(worker.pid).children()
        assert len(children) == 2
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        output.drain()
    finally:
        if worker.poll() is None:
            for child in psutil.Process(worker.pid).children():
                child.kill()
            worker.kill()
            worker.wait()
        assert worker.stdout is not None
        worker.stdout.close()
    assert "stopping gracefully" in output.text
    assert "Worker stopped" in output.text
    assert f"Scheduled workflow for order {order_id}" in output.text
    assert "INFO:UpdateInventoryActivity:There are now 7 cars left in stock" in output.text
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    status = _manage(
        fresh_site,
        "shell",
        "-c",
        f"from orders.models import Order; print(Order.objects.get(pk='{order_id}').status)",
    )
    assert status.stdout.strip().splitlines()[-1] == "completed"


def test_quickstart_prints_the_seed_lines(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "quickstart", "--port=0"],
        cwd=BASE_DIR,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "INFO:NotifyActivity:Received order " in out and " for 1 cars at $5000 !" in out
    assert "INFO:VerifyInventoryActivity:There are 10 Cars available for purchase" in out
    assert "INFO:UpdateInventoryActivity:There are now 9 cars left in stock" in out
    assert " has completed!" in out
    assert 'Workflow completed! Result: {"processed": true}' in out
    # Its own databases: the shop's database under the same var/ is untouched.
    assert (tmp_path / "quickstart.sqlite3").exists()
    assert (tmp_path / "quickstart-workflows.db").exists()
    assert not (tmp_path / "orders.sqlite3").exists()


def test_worker_processes_exit_when_the_parent_is_killed(fresh_site):
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "runworker", "--processes=1", "--port=0"],
        cwd=BASE_DIR,
        env=_env(fresh_site),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = OutputReader(worker)
    try:
        output.wait_for("connected to 127.0.0.1:")
        children = psutil.Process(worker.pid).children()
        worker.kill()
        worker.wait()
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert alive == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        assert worker.stdout is not None
        worker.stdout.close()


def test_runworker_refuses_an_unmigrated_database_with_the_fix(tmp_path):
    result = _manage(tmp_path, "runworker", "--processes=0", "--port=0", "--once")

    assert result.returncode != 0
    assert "run `python manage.py migrate`" in result.stderr
    assert "Traceback" not in result.stderr
