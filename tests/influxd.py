"""A throwaway real InfluxDB 2 server (the influxd that `make influxd` builds) for the test session."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFLUXD = ROOT / ".tools" / "bin" / "influxd"
# The settings the influxdb container mounts (docker-compose.yml): the tests run with them, so they are proven valid.
CONFIG_DIR = ROOT / "influxdb"
# Flags the harness gives influxd, which win over the file: a quiet test log.
FLAG_OVERRIDES = ("log-level",)
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class InfluxServer:
    """One influxd process on a free loopback port; stop() and start() keep its data, as an outage would."""

    def __init__(self, workdir: Path, binary: Path = INFLUXD):
        if not binary.is_file():
            raise RuntimeError(
                f"{binary} is missing: tests need a real InfluxDB 2. Run `make influxd` (make test does it first)."
            )
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(32)
        self.org = "hodlboard-tests"
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "influxd.log"

    def start(self) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--http-bind-address",
                f"127.0.0.1:{self.port}",
                "--bolt-path",
                str(data / "influxd.bolt"),
                "--engine-path",
                str(data / "engine"),
                "--sqlite-path",
                str(data / "influxd.sqlite"),
                "--ui-disabled",
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INFLUXD_CONFIG_PATH": str(CONFIG_DIR)},
        )
        log.close()
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"influxd did not become healthy within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def onboard(self, **values) -> None:
        """The onboarding API (what the official image's DOCKER_INFLUXDB_INIT_MODE=setup calls); `values` override
        the harness's user, organisation, bucket and token."""
        body = {
            "username": "admin",
            "password": secrets.token_urlsafe(16),
            "org": self.org,
            "bucket": "onboarding",
            "token": self.admin_token,
            **values,
        }
        self.org, self.admin_token = body["org"], body["token"]
        request = urllib.request.Request(
            f"{self.url}/api/v2/setup",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 201:
                raise RuntimeError(f"onboarding answered {response.status}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
