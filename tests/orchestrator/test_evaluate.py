"""Eval scoring: parsing p and x from completions, ERV judge over the dataset's labels, LLM judge fallback."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from orchestrator.data import PromptRecord
from orchestrator.evaluate import format_table, llm_judge, score_texts

RECORDS = [PromptRecord(str(i), "p", g, "d") for i, g in enumerate(["happy", "sad", "fear"])]
TEXTS = [
    "<think>She laughs.</think><answer>Happiness</answer>",  # p = happy (synonym)
    "<think>He cries.</think><answer>bored</answer>",  # p = unknown
    "<think>Shaking.</think>",  # no answer: unknown
]


def test_score_texts_parses_and_judges():
    seen = []

    def judge(explanations):
        seen.extend(explanations)
        return ["happy", "sad", "fear"]

    metrics, rows = score_texts(TEXTS, RECORDS, judge)
    assert seen == ["She laughs.", "He cries.", "Shaking."]
    assert [r["prediction"] for r in rows] == ["happy", "unknown", "unknown"]
    assert metrics["WAR"] == pytest.approx(1 / 3) and metrics["EEA"] == 1.0
    assert metrics["FCR"] == pytest.approx(1 / 3) and metrics["EPC"] == pytest.approx(1 / 3)
    assert "| before | 100.00 | 33.33 | 33.33 | 33.33 | 33.33 |" in format_table({"before": metrics})


def test_erv_judge_picks_among_dataset_labels(tmp_path):
    from orchestrator.evaluate import erv_judge
    from tests.support.tiny_erv import build_tiny_erv

    labels = ["happy", "sad"]
    judge = erv_judge(build_tiny_erv(tmp_path / "erv"), labels)
    out = judge(["She is laughing and smiling.", "", "A chair."])
    assert out[1] == "neutral"  # nothing to judge
    assert out[0] in labels and out[2] in labels


def test_llm_judge_uses_the_paper_prompt_and_maps_invalid_to_neutral():
    prompts, replies = [], iter(["Sadness", "banana"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            prompts.append(body["messages"][0]["content"])
            out = json.dumps({"choices": [{"message": {"content": next(replies)}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        judge = llm_judge(f"http://127.0.0.1:{server.server_port}/v1", "m", ["happy", "sad"])
        assert judge(["tears", "fruit"]) == ["sad", "neutral"]
    finally:
        server.shutdown()
        server.server_close()
    assert prompts[0] == (
        "Read the reasoning content and respond with the appropriate emotion in happy, sad. "
        "Reply with only the emotion word. Reason: tears Answer Emotion:"
    )
