"""Fuzzing the reward service's two front doors (hypothesis): raw protobuf frames and JSON bodies.

One in-process service (the real tiny ONNX ERV and tokenizer) on 127.0.0.1, run on its own event
loop in a background thread for the module and stopped at the end. Each example asserts a defined
status (never UNKNOWN/INTERNAL, never HTTP 5xx or 422); after each suite a good request must still
be scored correctly. Bounded example counts keep the whole file to well under a minute.
"""

import asyncio
import json
import threading

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_service.core import reward
from reward_service.erv.model import ErvModel
from reward_service.proto_gen import reward_pb2
from tests.support.service_helpers import running_service

pytestmark = pytest.mark.timeout(240)
GOOD_TEXT = "<think>She smiles at him. He laughs!</think><answer>happy</answer>"
GRPC_DEFINED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.DEADLINE_EXCEEDED}  # fmt: skip
HTTP_DEFINED = {200, 400, 413, 415, 429, 504}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def service(tiny_erv_dir):
    erv = ErvModel.load(tiny_erv_dir, num_threads=1)
    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), None
    ports = {}

    async def run():
        nonlocal stop
        stop = asyncio.Event()
        async with running_service(erv, max_completions_per_request=8, max_completion_chars=2000) as svc:
            ports.update(grpc=svc.grpc_port, http=svc.http_port)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(60), "service did not start"
    with (
        grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel,
        httpx.Client(base_url=f"http://127.0.0.1:{ports['http']}", timeout=30) as http,
    ):
        yield erv, channel.unary_unary("/erv.reward.v1.RewardService/Score"), http
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


def _assert_good_request_scored(erv, raw_score, http):
    want = reward.score_completion(
        GOOD_TEXT, "happy", lambda s: (erv.predict_proba(s), erv.labels), erv.tau, erv.top_k
    )
    msg = reward_pb2.ScoreRequest(
        completions=[reward_pb2.Completion(id="g", text=GOOD_TEXT, ground_truth="happy")]
    )
    got = reward_pb2.ScoreResponse.FromString(raw_score(msg.SerializeToString(), timeout=30)).scores[0]
    assert (got.total, got.num_sentences) == (pytest.approx(want.total), want.num_sentences)
    body = {"completions": [{"id": "g", "text": GOOD_TEXT, "ground_truth": "happy"}]}
    assert http.post("/v1/score", json=body).json()["scores"][0]["total"] == pytest.approx(want.total)


TEXTS = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "happy", ". ", '"', "\x00", "\ud800", "😀"]),
             max_size=30).map("".join),
)  # fmt: skip
LABELS = st.one_of(st.sampled_from(["happy", "Sad.", "joy", "nope", ""]), st.text(max_size=10))
COMPLETIONS = st.fixed_dictionaries({"id": st.text(max_size=8), "text": TEXTS, "ground_truth": LABELS})
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
BODIES = st.one_of(
    st.fixed_dictionaries(
        {"completions": st.lists(COMPLETIONS, max_size=10)},
        optional={"request_id": st.one_of(st.text(max_size=10), JSON_VALUES), "return_sentences": JSON_VALUES,
                  "timeout_ms": st.one_of(st.integers(), st.floats(), JSON_VALUES), "extra": JSON_VALUES},
    ),
    JSON_VALUES,
)  # fmt: skip


def _proto_strings(draw_text):
    return st.builds(
        lambda comps, rid, rs, t: reward_pb2.ScoreRequest(
            request_id=rid, completions=comps, return_sentences=rs, timeout_ms=t
        ).SerializeToString(),
        st.lists(st.builds(reward_pb2.Completion, id=st.text(max_size=8), text=draw_text, ground_truth=LABELS),
                 max_size=10),
        st.text(max_size=10), st.booleans(), st.integers(0, 2**32 - 1),
    )  # fmt: skip


SAFE_TEXTS = TEXTS.map(lambda t: t.encode("utf-8", "replace").decode("utf-8"))  # protobuf strings are UTF-8
FRAMES = st.one_of(
    st.binary(max_size=200),
    _proto_strings(SAFE_TEXTS),
    st.tuples(_proto_strings(SAFE_TEXTS), st.integers(0, 199), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]  # a valid frame with a few bytes overwritten
    ),
)


@FUZZ
@given(frame=FRAMES)
def test_fuzzed_protobuf_frames_get_a_defined_status(service, frame):
    _, raw_score, _ = service
    try:
        raw_score(frame, timeout=30)
        code = grpc.StatusCode.OK
    except grpc.RpcError as err:
        code = err.code()
    assert code in GRPC_DEFINED, code


@FUZZ
@given(body=BODIES)
def test_fuzzed_json_bodies_get_a_defined_status(service, body):
    _, _, http = service
    raw = json.dumps(body).encode()  # lone surrogates stay as \ud800 escapes, as a hostile client sends
    resp = http.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code in HTTP_DEFINED, (resp.status_code, resp.text)
    if resp.status_code != 200:
        assert set(resp.json()["error"]) == {"code", "message"}


def test_server_alive_and_correct_after_the_fuzzing(service):
    _assert_good_request_scored(*service)
