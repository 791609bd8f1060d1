"""The image's recipe, run here: no Docker engine on this machine, so the Dockerfile's own
install command runs in a fresh virtualenv, then its start command and its health check,
with the endpoints moved to loopback ports (tests use loopback only)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from ..conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out



def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / ("hadolint.exe" if os.name == "nt" else "hadolint")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_a_sim_gateway_a_strategy_and_a_subscriber() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"gateway", "strategy", "tail"}
    assert services["gateway"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert all(port.startswith("127.0.0.1:") for port in services["gateway"]["ports"])  # not encrypted: host-local
    for name in ("strategy", "tail"):
        assert services[name]["depends_on"]["gateway"]["condition"] == "service_healthy"
        command = services[name]["command"]
        assert "tcp://gateway:5555" in command and "tcp://gateway:5556" in command
    assert (ROOT / services["strategy"]["command"][1].replace("/app/", "")).exists()  # the example it runs


@pytest.mark.timeout(600)  # a fresh virtualenv installs every dependency
def test_the_dockerfile_install_start_and_health_check_work(tmp_path: Path) -> None:
    steps = instructions()
    base = next(args for word, args in steps if word == "FROM")
    assert base.startswith("python:3.11-slim")
    assert any(word == "USER" and args.isdigit() and args != "0" for word, args in steps)  # not root
    [install] = [args for word, args in steps if word == "RUN" and "pip install" in args]
    pip_args = install.split("&&")[0].split()  # pip install --no-cache-dir /app
    assert pip_args[:2] == ["pip", "install"] and pip_args[-1] == "/app"
    cmd = json.loads(next(args for word, args in steps if word == "CMD"))
    health = json.loads(next(args for word, args in steps if word == "HEALTHCHECK").split("CMD", 1)[1])

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    # The image's install, from this checkout instead of /app (the pip cache flag only sizes the image).
    flags = [a for a in pip_args[2:-1] if a != "--no-cache-dir"]
    installed = subprocess.run([str(bin_dir / "pip"), "install", *flags, str(ROOT)], capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]

    router, pub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    start = [str(bin_dir / cmd[0])] + [
        {"tcp://0.0.0.0:5555": router, "tcp://0.0.0.0:5556": pub, "/home/qmt/data": str(tmp_path / "data")}.get(a, a)
        for a in cmd[1:]
    ]
    assert start[1] == "serve" and router in start and pub in start
    server = subprocess.Popen(start, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        check = [str(bin_dir / health[0]), *health[1:], "--router", router, "--pub", pub]

        def healthy() -> subprocess.CompletedProcess[str] | None:  # the image's health check
            result = subprocess.run(check, capture_output=True, text=True, timeout=30)
            assert server.poll() is None, server.stderr.read() if server.stderr else "gateway exited"
            return result if result.returncode == 0 else None

        result = wait_for(healthy, timeout=60.0, interval=0.5, what="the image's health check to pass")
        assert "counter connected" in result.stdout
    finally:
        server.terminate()
        assert server.wait(30) == 0
