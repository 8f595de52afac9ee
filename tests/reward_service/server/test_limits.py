"""HTTP and gRPC limits of the reward service: sizes, auth before the body, one error shape, real codes.

One in-process service (fake classifier, a token, small body limit) on 127.0.0.1 per test, stopped
by running_service.
"""

import asyncio
import socket

import grpc
import httpx
import pytest

from reward_service.proto_gen import reward_pb2
from tests.support.fake_classifier import FakeClassifier
from tests.support.service_helpers import running_service

pytestmark = pytest.mark.timeout(120)
TOKEN = "tok-123"
GOOD = {"completions": [{"id": "a", "text": "<think>She is happy.</think><answer>joy</answer>", "ground_truth": "happy"}]}  # fmt: skip


def _raw_http(port: int, head: bytes, timeout: float = 5.0) -> bytes:
    """Send a request head (no body) and return what the server answers before closing or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return data


def test_http_limits_and_error_shape(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    auth = {"authorization": f"bearer {TOKEN}"}  # lower-case scheme: accepted

    async def main():
        async with running_service(
            FakeClassifier(), token_file=token_file, http_max_body_bytes=4096, http_max_header_bytes=8192
        ) as svc:
            port, out = svc.http_port, {}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                out["ok"] = await http.post("/v1/score", json=GOOD, headers=auth)
                out["upper"] = await http.post(
                    "/v1/score", json=GOOD, headers={"authorization": f"BEARER {TOKEN}"}
                )
                out["no_token"] = await http.post("/v1/score", json=GOOD)
                out["big"] = await http.post("/v1/score", content=b"x" * 5000, headers={**auth, "content-type": "application/json"})  # fmt: skip

                async def chunks():
                    for _ in range(10):
                        yield b" " * 1000

                out["chunked"] = await http.post("/v1/score", content=chunks(), headers={**auth, "content-type": "application/json"})  # fmt: skip
                out["type"] = await http.post(
                    "/v1/score", content=b"{}", headers={**auth, "content-type": "text/plain"}
                )
                out["inf"] = await http.post("/v1/score", content=b'{"completions": [], "timeout_ms": 1e400}', headers={**auth, "content-type": "application/json"})  # fmt: skip
                out["not_json"] = await http.post("/v1/score", content=b"{nope", headers={**auth, "content-type": "application/json"})  # fmt: skip
                out["field"] = await http.post("/v1/score", json={"completions": [{"id": 1}]}, headers=auth)
                out["404"] = await http.get("/nowhere")
                out["405"] = await http.get("/v1/score", headers=auth)
                out["docs"] = await http.get("/docs")
                out["openapi"] = await http.get("/openapi.json")
                out["big_header"] = await http.get("/healthz", headers={"x-big": "a" * 10_000})
                out["healthz"] = await http.get("/healthz")
                # No token, a 10 MB body announced but never sent: answered at once, nothing read.
                head = f"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {10**7}\r\n\r\n"
                out["unauth_head"] = await asyncio.to_thread(_raw_http, port, head.encode())
                many = "".join(f"x-h{i}: v\r\n" for i in range(10_000))
                out["many_headers"] = await asyncio.to_thread(_raw_http, port, f"GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n".encode())  # fmt: skip
                svc.scorer.score = _boom
                out["500"] = await http.post("/v1/score", json=GOOD, headers=auth)
                out["metrics"] = (await http.get("/metrics")).text
            return out

    out = asyncio.run(main())
    assert out["ok"].status_code == 200 and out["upper"].status_code == 200
    codes = {k: v.status_code for k, v in out.items() if isinstance(v, httpx.Response)}
    assert codes == {
        "ok": 200, "upper": 200, "no_token": 401, "big": 413, "chunked": 413, "type": 415, "inf": 400,
        "not_json": 400, "field": 400, "404": 404, "405": 405, "docs": 404, "openapi": 404, "big_header": 431,
        "healthz": 200, "500": 500,
    }  # fmt: skip
    for name in (
        "no_token",
        "big",
        "chunked",
        "type",
        "inf",
        "not_json",
        "field",
        "404",
        "405",
        "big_header",
    ):
        body = out[name].json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (name, body)
    assert out["inf"].json()["error"]["message"].startswith("timeout_ms:")
    assert out["field"].json()["error"]["message"].startswith("completions[0].id:")
    assert out["type"].json()["error"]["message"].startswith("content-type:")
    assert out["unauth_head"].startswith(b"HTTP/1.1 401")
    assert out["many_headers"].startswith(b"HTTP/1.1 431")
    m = out["metrics"]
    for code, n in (
        ("OK", 2),
        ("UNAUTHENTICATED", 2),
        ("INVALID_ARGUMENT", 6),
        ("UNIMPLEMENTED", 1),
        ("INTERNAL", 1),
    ):
        assert f'erv_reward_requests_total{{code="{code}",rpc="http_score"}} {n}.0' in m, (code, m)


async def _boom(req):
    raise RuntimeError("a bug")


def test_docs_behind_the_token_when_turned_on(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)

    async def main():
        async with running_service(FakeClassifier(), token_file=token_file, http_docs=True) as svc:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}") as http:
                return [
                    (await http.get(p, headers=h)).status_code
                    for p in ("/docs", "/openapi.json")
                    for h in ({}, {"authorization": f"Bearer {TOKEN}"})
                ]

    assert asyncio.run(main()) == [401, 200, 401, 200]


def test_grpc_corrupt_unary_frames_lowercase_bearer_and_v1_reflection(tmp_path, caplog):
    from grpc_reflection.v1alpha import reflection_pb2

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    good = reward_pb2.ScoreRequest(completions=[reward_pb2.Completion(**GOOD["completions"][0])])
    # A string field holding invalid UTF-8: completions[0].id = b"\xff"
    bad_utf8 = reward_pb2.ScoreRequest.FromString(b"").SerializeToString() + b"\x12\x03\x0a\x01\xff"

    async def main():
        async with running_service(FakeClassifier(), token_file=token_file) as svc:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
                md = (("authorization", f"bearer {TOKEN}"),)
                raw = channel.unary_unary("/erv.reward.v1.RewardService/Score")
                codes = []
                for frame in (b"\xff\xff\xff\x0f\x12garbage", bad_utf8):
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await raw(frame, metadata=md)
                    codes.append((err.value.code(), err.value.details()))
                ok = reward_pb2.ScoreResponse.FromString(await raw(good.SerializeToString(), metadata=md))
                v1 = channel.stream_stream(
                    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                    request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                    response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
                )()
                await v1.write(reflection_pb2.ServerReflectionRequest(list_services=""))
                listed = await v1.read()
                await v1.done_writing()
            return codes, ok, {s.name for s in listed.list_services_response.service}

    codes, ok, services = asyncio.run(main())
    for code, details in codes:
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("malformed ScoreRequest"), (
            details
        )
    assert [s.id for s in ok.scores] == ["a"] and ok.scores[0].total == 3.0
    assert {"erv.reward.v1.RewardService", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= services  # fmt: skip
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
