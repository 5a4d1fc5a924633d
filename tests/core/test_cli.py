"""The operator's commands, run as a new user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
           "CLOUDSEAL_HSM": f"soft:{tmp_path}/hsm", "COLUMNS": "200"}
    # The installed console script, run from outside the checkout: proves every package is
    # part of the distribution (a module found only through the current directory fails here).
    script = Path(sys.executable).parent / "cloudseal"
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


def test_migrate_init_twice_token_and_audit(tmp_path: Path) -> None:
    assert run(tmp_path, "migrate").returncode == 0
    first = run(tmp_path, "init")
    assert first.returncode == 0, first.stderr
    assert "root CA" in first.stderr and "OCSP signer" in first.stderr
    second = run(tmp_path, "init")
    assert second.returncode == 0 and "nothing changed" in second.stderr
    master_key = tmp_path / "hsm" / "master.key"
    assert master_key.stat().st_mode & 0o777 == 0o600
    token = run(tmp_path, "token", "issue", "--subject", "root-operator").stdout.strip()
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert jwt.decode(token, options={"verify_signature": False})["role"] == "operator"
    verified = run(tmp_path, "audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stderr
    assert run(tmp_path, "pki", "refresh").returncode == 0


def test_init_without_migrations_explains_itself(tmp_path: Path) -> None:
    result = run(tmp_path, "init")
    assert result.returncode == 2
    assert "run `cloudseal migrate` first" in result.stderr
