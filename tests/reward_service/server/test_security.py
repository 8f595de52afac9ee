"""TLS, mutual TLS and the bearer token on gRPC and HTTP (self-signed certificates made by the test)."""

import asyncio
import random
import ssl

import grpc
import httpx
import pytest

from reward_service.client import RewardClient, RewardRequestError, RewardUnavailableError
from reward_service.erv.model import ErvModel
from tests.support.service_helpers import make_certs, make_group, running_service

pytestmark = pytest.mark.timeout(300)  # a hung server fails the test, not the run

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def erv(tiny_erv_dir):
    return ErvModel.load(tiny_erv_dir, num_threads=1)


def test_mutual_tls_and_token(erv, certs, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    group = make_group(random.Random(0), "s", size=2)
    outcomes = {}

    async def try_grpc(name, address, attempts=1, **kwargs):
        # wait_for_ready=False: a failed TLS handshake is reported at once; a waiting call would
        # read it as a server still starting and wait out its 30 s deadline.
        try:
            async with RewardClient(
                address, max_attempts=attempts, deadline_s=30, wait_for_ready=False, **kwargs
            ) as client:
                outcomes[name] = sorted(await client.score(group))
        except RewardRequestError as err:
            outcomes[name] = err.code
        except RewardUnavailableError:
            outcomes[name] = "unavailable"

    async def main():
        async with running_service(
            erv,
            tls_cert=certs["server_cert"],
            tls_key=certs["server_key"],
            tls_client_ca=certs["ca"],
            token_file=token_file,
        ) as svc:
            address = f"127.0.0.1:{svc.grpc_port}"
            mtls = {"tls_ca": certs["ca"], "tls_cert": certs["client_cert"], "tls_key": certs["client_key"]}
            await try_grpc("ok", address, attempts=5, token=TOKEN, **mtls)
            await try_grpc("wrong_token", address, token="nope", **mtls)
            await try_grpc("no_token", address, **mtls)
            await try_grpc("no_client_cert", address, token=TOKEN, tls_ca=certs["ca"])
            await try_grpc("plaintext", address, token=TOKEN)
            async with RewardClient(address, **mtls) as client:  # health stays open for probes
                await client.wait_ready(timeout_s=5)
                outcomes["health_without_token"] = "SERVING"
                async with client.stream() as stream:
                    with pytest.raises(RewardRequestError) as err:
                        await stream.score(group)
                outcomes["stream_no_token"] = err.value.code

            context = ssl.create_default_context(cafile=str(certs["ca"]))
            context.load_cert_chain(str(certs["client_cert"]), str(certs["client_key"]))
            base = f"https://127.0.0.1:{svc.http_port}"
            body = {"completions": [c.__dict__ for c in group]}
            async with httpx.AsyncClient(base_url=base, verify=context) as http:
                good = await http.post("/v1/score", json=body, headers={"authorization": f"Bearer {TOKEN}"})
                wrong = await http.post("/v1/score", json=body, headers={"authorization": "Bearer nope"})
                missing = await http.post("/v1/score", json=body)
                metrics = await http.get("/metrics")
            outcomes["http"] = (good.status_code, wrong.status_code, missing.status_code, metrics.status_code)
            outcomes["metrics"] = metrics.text
            no_cert = ssl.create_default_context(cafile=str(certs["ca"]))
            async with httpx.AsyncClient(base_url=base, verify=no_cert) as http:
                with pytest.raises(httpx.HTTPError):
                    await http.get("/healthz")

    asyncio.run(main())
    assert outcomes["ok"] == ["s-0", "s-1"]
    assert outcomes["wrong_token"] == grpc.StatusCode.UNAUTHENTICATED
    assert outcomes["no_token"] == grpc.StatusCode.UNAUTHENTICATED
    assert outcomes["stream_no_token"] == grpc.StatusCode.UNAUTHENTICATED
    assert outcomes["no_client_cert"] == "unavailable"
    assert outcomes["plaintext"] == "unavailable"
    assert outcomes["health_without_token"] == "SERVING"
    assert outcomes["http"] == (200, 401, 401, 200)
    assert 'erv_reward_requests_total{code="UNAUTHENTICATED",rpc="Score"} 2.0' in outcomes["metrics"]
    assert 'erv_reward_requests_total{code="UNAUTHENTICATED",rpc="ScoreStream"} 1.0' in outcomes["metrics"]
    assert 'erv_reward_requests_total{code="UNAUTHENTICATED",rpc="http_score"} 2.0' in outcomes["metrics"]


def test_server_tls_without_client_certificates(erv, certs):
    async def main():
        async with running_service(erv, tls_cert=certs["server_cert"], tls_key=certs["server_key"]) as svc:
            async with RewardClient(f"127.0.0.1:{svc.grpc_port}", tls_ca=certs["ca"]) as client:
                scores = await client.score(make_group(random.Random(1), "t", size=3))
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(certs["ca"]))) as http:
                ready = await http.get(f"https://127.0.0.1:{svc.http_port}/readyz")
            return scores, ready.status_code

    scores, ready = asyncio.run(main())
    assert sorted(scores) == ["t-0", "t-1", "t-2"] and ready == 200
