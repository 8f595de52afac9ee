"""Reward service process entry: gRPC (grpc.aio) and HTTP (uvicorn) on one asyncio event loop.

Run as `erv-grpo reward serve ...` or `python -m reward_service.server ...` (same options).
`RewardService` composes the pieces (model -> SentenceBatcher -> RewardScorer -> gRPC and HTTP
adapters) and is also what tests start in-process. Lifecycle: NOT_SERVING until a real forward
pass ran; on SIGTERM health flips to NOT_SERVING, new calls get UNAVAILABLE, in-flight work
gets `drain_seconds` to finish, and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import ssl
import sys

import uvicorn

from common.errors import ErvGrpoError, error_line
from reward_service.errors import RewardServiceError
from reward_service.server.batcher import Classifier, SentenceBatcher
from reward_service.server.config import RewardServiceConfig
from reward_service.server.grpc_adapter import RewardServicer, ServiceState, build_grpc_server
from reward_service.server.http_adapter import build_http_app
from reward_service.server.http_limits import H11Protocol431
from reward_service.server.prometheus_metrics import RewardMetrics
from reward_service.server.scorer import RewardScorer

log = logging.getLogger("erv_grpo.reward")


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # signals belong to RewardService's drain logic, not to uvicorn


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so;
    # with Nagle on, every HTTP response stalled ~40 ms on the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot bind HTTP to {host}:{port}: {err.strerror}") from None
    sock.set_inheritable(True)
    return sock


def exposure_warning(host: str, token: str | None, tls: bool) -> str | None:
    """The start-up warning for a bind beyond loopback with neither a token nor TLS, else None."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if loopback or token is not None or tls:
        return None
    return (
        f"reward service bound to {host} (beyond loopback) with neither a bearer token (--token-file) "
        "nor TLS (--tls-cert): anyone who reaches the port can score and read metrics"
    )


class RewardService:
    """One running reward service (gRPC + HTTP) around a classifier."""

    def __init__(self, config: RewardServiceConfig, classifier: Classifier):
        self.config = config
        self.classifier = classifier
        self.metrics = RewardMetrics()
        self.metrics.model_info.labels(version=classifier.version).set(1)
        self.state = ServiceState(self.metrics)
        self.token = config.read_token()
        self.batcher = SentenceBatcher(
            classifier,
            max_batch_tokens=config.max_batch_tokens,
            max_wait_s=config.max_wait_ms / 1000,
            max_queue_sentences=config.max_queue_sentences,
            max_queue_wait_s=config.max_queue_wait_ms / 1000,
            cache_size=config.sentence_cache_size,
            retry_after_s=config.retry_after_ms / 1000,
            metrics=self.metrics,
        )
        self.scorer = RewardScorer(
            self.batcher,
            max_completions=config.max_completions_per_request,
            max_chars=config.max_completion_chars,
            idempotency_size=config.idempotency_cache_size,
            idempotency_ttl_s=config.idempotency_ttl_s,
            idempotency_max_bytes=config.idempotency_cache_bytes,
            metrics=self.metrics,
            weights=config.weights(),
        )
        self.grpc_port = 0
        self.http_port = 0
        self._grpc = None
        self._http: _Uvicorn | None = None
        self._http_task: asyncio.Task | None = None

    @classmethod
    def from_config(cls, config: RewardServiceConfig) -> RewardService:
        from reward_service.erv.model import ErvModel  # the ERV runtime loads only where a model is served

        model = ErvModel.load(
            config.model_dir,
            num_threads=config.num_threads,
            device=config.device,
            backend=config.backend,
            dtype=config.dtype,
        )
        return cls(config, model)

    async def start(self) -> None:
        """Bind and serve; health turns SERVING only after a real forward pass succeeded."""
        await self.state.set_serving(False)
        warning = exposure_warning(self.config.host, self.token, self.config.tls_cert is not None)
        if warning is not None:
            log.warning(warning)
        self.batcher.start()
        servicer = RewardServicer(self.scorer, self.state, self.metrics, self.config.max_inflight_per_stream)
        self._grpc, self.grpc_port = build_grpc_server(servicer, self.state, self.config, self.token)
        await self._grpc.start()
        await self._start_http()
        await self.batcher.warmup()
        await self.state.set_serving(True)
        if self.config.ready_file is not None:
            self.config.ready_file.write_text(f"{self.grpc_port} {self.http_port}\n")
        log.info("reward service ready: model %s, gRPC %s:%d, HTTP %s:%d", self.classifier.version,
                 self.config.host, self.grpc_port, self.config.host, self.http_port)  # fmt: skip

    async def _start_http(self) -> None:
        c = self.config
        app = build_http_app(
            self.scorer, self.state, self.metrics, self.token,
            max_body_bytes=c.http_max_body_bytes or c.max_message_bytes,
            max_header_bytes=c.http_max_header_bytes, docs=c.http_docs,
        )  # fmt: skip
        tls = {}
        if c.tls_cert is not None:
            tls = {"ssl_certfile": str(c.tls_cert), "ssl_keyfile": str(c.tls_key)}
            if c.tls_client_ca is not None:
                tls.update(ssl_ca_certs=str(c.tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        uv_config = uvicorn.Config(
            app, host=c.host, port=c.http_port, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=int(c.drain_seconds) + 1, http=H11Protocol431,
            h11_max_incomplete_event_size=c.http_max_header_bytes, **tls,
        )  # fmt: skip
        sock = _bind(c.host, c.http_port)
        self.http_port = sock.getsockname()[1]
        self._http = _Uvicorn(uv_config)
        self._http_task = asyncio.get_running_loop().create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()  # raises the startup error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new calls, let in-flight work finish within grace_s, stop."""
        grace_s = self.config.drain_seconds if grace_s is None else grace_s
        loop = asyncio.get_running_loop()
        end = loop.time() + grace_s
        self.state.draining = True
        await self.state.set_serving(False)
        # Listeners stay open meanwhile: probes read NOT_SERVING and new calls get a clear
        # UNAVAILABLE from the servicer instead of a refused connection.
        while self.state.active_requests and loop.time() < end:
            await asyncio.sleep(0.02)
        if self._grpc is not None:
            await self._grpc.stop(max(0.0, min(1.0, end - loop.time())))  # then cut idle streams
        if self._http is not None:
            self._http.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, max(0.0, end - loop.time()) + 2)
        await self.batcher.stop()


async def serve_until_signal(config: RewardServiceConfig) -> int:
    from reward_service.erv.model import ErvModelError

    try:
        service = RewardService.from_config(config)
    except ErvModelError as err:
        raise RewardServiceError(f"--model-dir: {err}") from None
    try:
        await service.start()
    except OSError as err:  # a port in use, an address not on this host
        await service.stop(0)
        raise RewardServiceError(f"{err} (--host/--grpc-port/--http-port)") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"erv-grpo reward service: gRPC {config.host}:{service.grpc_port}, HTTP {config.host}:{service.http_port}, "
          f"model {service.classifier.version}", flush=True)  # fmt: skip
    await stop.wait()
    log.info("draining (grace %.1f s)", config.drain_seconds)
    await service.stop(config.drain_seconds)
    print("erv-grpo reward service: drained, exiting", flush=True)
    return 0


def run_server(config: RewardServiceConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve_until_signal(config))


def main(argv: list[str] | None = None) -> int:
    from reward_service.server.cli import add_serve_options
    from reward_service.server.config import load_service_config

    parser = argparse.ArgumentParser(
        prog="python -m reward_service.server", description="Run the ERV reward service."
    )
    add_serve_options(parser)
    try:
        return run_server(load_service_config(parser.parse_args(argv)))
    except ErvGrpoError as err:  # this process's own CLI: one line, exit 1
        raise SystemExit(error_line(err)) from None


if __name__ == "__main__":
    sys.exit(main())
