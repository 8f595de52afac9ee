"""A ScoreStream whose client stops reading responses: the server stops reading its requests.

In-process service on loopback (running_service, stopped by the test) with the fake classifier.
What bounds memory is flow control: at most max_inflight_per_stream requests are being scored
or waiting to be sent; the requests the servicer has not read wait in HTTP/2 flow-control
windows, whose size gRPC bounds, not the length of the stream.
"""

import asyncio
import math

import grpc
import pytest

from reward_service.proto_gen import reward_pb2, reward_pb2_grpc
from tests.support.fake_classifier import FakeClassifier
from tests.support.service_helpers import running_service

pytestmark = pytest.mark.timeout(300)

TOTAL = 2000  # requests the client tries to send, about 16 MB of responses with return_sentences
MAX_INFLIGHT = 4


def request(i: int) -> reward_pb2.ScoreRequest:
    think = " ".join(
        f"Sentence {i} number {k} looks happy and calm and quite long on purpose." for k in range(8)
    )
    return reward_pb2.ScoreRequest(
        request_id=f"r{i}",
        return_sentences=True,  # large responses: the client's receive window fills sooner
        completions=[
            reward_pb2.Completion(
                id=f"r{i}-c{j}", text=f"<think>{think}</think><answer>happy</answer>", ground_truth="happy"
            )
            for j in range(16)
        ],  # fmt: skip
    )


async def plateau(read_count, polls: int = 4, every_s: float = 0.5, limit_s: float = 60) -> int:
    """The count once it stopped changing for `polls` polls in a row (or at the time limit)."""
    last, same, waited = -1, 0, 0.0
    while same < polls and waited < limit_s:
        await asyncio.sleep(every_s)
        waited += every_s
        now = read_count()
        same = same + 1 if now == last else 0
        last = now
    return last


def test_stream_whose_client_stops_reading_stays_bounded_then_completes():
    model = FakeClassifier()

    async def main():
        async with running_service(model, max_inflight_per_stream=MAX_INFLIGHT) as svc:
            scored = lambda: int(svc.metrics.completions._value.get()) // 16  # noqa: E731
            # No BDP probing: the client's receive window stays at its 64 KiB default, so the bound is tight.
            options = [("grpc.http2.bdp_probe", 0)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc_port}", options=options) as channel:
                call = reward_pb2_grpc.RewardServiceStub(channel).ScoreStream()
                written = 0

                async def write_all():
                    nonlocal written
                    for i in range(TOTAL):
                        await call.write(request(i))
                        written += 1
                    await call.done_writing()

                writer = asyncio.get_running_loop().create_task(write_all())
                stalled_scored = await plateau(scored)
                stalled_written = written
                # Now read everything: the stream resumes and each request is answered once.
                ids, response_bytes = [], 0
                async for response in call:
                    response_bytes = max(response_bytes, response.ByteSize())
                    assert not response.HasField("error"), response.error
                    ids.append(response.request_id)
                await writer
                return stalled_scored, stalled_written, ids, scored(), response_bytes

    stalled_scored, stalled_written, ids, final_scored, response_bytes = asyncio.run(main())
    print(f"while not reading: {stalled_scored} scored, {stalled_written} written of {TOTAL}")
    assert stalled_written < TOTAL  # the client's writes blocked: the server stopped reading
    assert stalled_scored <= stalled_written
    # Scored while stalled: the stream's in-flight slots, plus the responses that fit the client's
    # 64 KiB receive window, plus one or two in gRPC's send path; not the hundreds written.
    assert stalled_scored <= MAX_INFLIGHT + math.ceil(65536 / response_bytes) + 2
    assert sorted(ids) == sorted(f"r{i}" for i in range(TOTAL))
    assert final_scored == TOTAL
