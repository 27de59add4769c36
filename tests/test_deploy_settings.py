"""`manage.py check --deploy` is clean under the production settings docs/webapp.md documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The production environment of docs/webapp.md ("Production settings").
PRODUCTION = {
    "DJANGO_SECRET_KEY": "x7Qm-not-a-real-key-but-long-and-varied-enough-9f2Lk8sD3pZ0vB6nR1tY4wE",
    "ALLOWED_HOSTS": "orders.example.com",
    "HTTPS_ONLY": "true",
    "BEHIND_TLS_PROXY": "true",
}


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))}
    clean.pop("HTTPS_ONLY", None)
    clean["ORDERS_VAR_DIR"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("code", ["W004", "W008", "W012", "W016"])
def test_check_deploy_warns_without_https_only(tmp_path, code):
    env = {k: v for k, v in PRODUCTION.items() if k != "HTTPS_ONLY"}

    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode != 0
    assert f"security.{code}" in result.stderr


def test_https_only_makes_cookies_secure_and_sends_hsts(tmp_path):
    script = (
        "import json; from django.conf import settings as s; print(json.dumps(["
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER]))"
    )

    on = manage(tmp_path, "shell", "-v", "0", "-c", script, **PRODUCTION)
    off = manage(tmp_path, "shell", "-v", "0", "-c", script)

    assert json.loads(on.stdout) == [
        True,
        True,
        True,
        31_536_000,
        ["HTTP_X_FORWARDED_PROTO", "https"],
    ]
    assert json.loads(off.stdout)[:4] == [False, False, False, 0]
