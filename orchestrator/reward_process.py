"""The reward service as seen by the orchestrator: a managed subprocess on loopback, or a remote address.

Runs in the orchestrator process. `erv-grpo reward serve` is started with --ready-file so ports
chosen by the OS (port 0) are known; the service counts as up once grpc.health.v1 says SERVING
(which it only does after a real ERV forward pass).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from orchestrator.config import RewardConfig
from orchestrator.errors import RewardProcessError


def health_serving(address: str, timeout_s: float = 2.0, tls_ca: str | None = None) -> bool:
    """True when the service at `address` answers grpc.health.v1 Check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if tls_ca:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(Path(tls_ca).read_bytes()))
    else:
        channel = grpc.insecure_channel(address)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False
    finally:
        channel.close()


class RewardProcess:
    """Either a managed `erv-grpo reward serve` subprocess (address None) or an external address."""

    def __init__(self, config: RewardConfig, run_dir: Path, verbose: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.log_file = self.run_dir / "logs" / "reward_service.log"
        self.verbose = verbose  # also copy the subprocess's output to our stderr
        self.proc: subprocess.Popen | None = None
        self.grpc_port, self.http_port = config.grpc_port, config.http_port
        self.address = config.address

    @property
    def managed(self) -> bool:
        return self.config.address is None

    def start(self) -> str:
        """Start (managed) or check (external) the service; return its gRPC address once SERVING."""
        if self.managed:
            self._spawn()
        self.wait_serving(self.config.startup_timeout_s)
        return self.address

    def _spawn(self) -> None:
        cfg = self.config
        ready = self.run_dir / "reward.ready"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "orchestrator.cli", "reward", "serve", "--model-dir", str(cfg.model_dir),
               "--host", "127.0.0.1", "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
               "--ready-file", str(ready), "--drain-seconds", "2"]  # fmt: skip
        if cfg.service_config:
            cmd += ["--config", cfg.service_config]
        if cfg.num_threads:
            cmd += ["--num-threads", str(cfg.num_threads)]
        if cfg.token_file:
            cmd += ["--token-file", cfg.token_file]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 (owned by the process or the copying thread)
        if self.verbose:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            threading.Thread(target=_tee, args=(self.proc.stdout, log), daemon=True).start()
        else:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
        end = time.monotonic() + cfg.startup_timeout_s
        while not (ready.is_file() and ready.read_text().strip()):
            if self.proc.poll() is not None:
                raise RewardProcessError(
                    f"reward service exited with code {self.proc.returncode} at start; see {self.log_file}"
                )
            if time.monotonic() > end:
                self.stop()
                raise RewardProcessError(f"reward service did not start within {cfg.startup_timeout_s} s")
            time.sleep(0.1)
        # Keep the OS-chosen ports: a restart after a crash comes back on the same address.
        self.grpc_port, self.http_port = (int(p) for p in ready.read_text().split()[:2])
        self.address = f"127.0.0.1:{self.grpc_port}"

    def wait_serving(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while not self.serving():
            if self.proc is not None and self.proc.poll() is not None:
                raise RewardProcessError(f"reward service exited (code {self.proc.returncode})")
            if time.monotonic() > end:
                raise RewardProcessError(f"reward service at {self.address} not SERVING within {timeout_s} s")
            time.sleep(0.2)

    def serving(self) -> bool:
        return self.address is not None and health_serving(self.address, tls_ca=self.config.tls_ca)

    def process_died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def restart_if_dead(self) -> bool:
        """Restart a managed subprocess that exited (same ports); True when it did."""
        if not self.process_died():
            return False
        self._spawn()
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _tee(pipe, log) -> None:
    """Copy the subprocess's output to its log file and to our stderr (verbose runs), until it exits."""
    with pipe, log:
        for line in iter(pipe.readline, b""):
            log.write(line)
            log.flush()
            sys.stderr.write(line.decode(errors="replace"))
