"""data/clips/build.py: the committed manifest is what the seeds give, the set's size and labels, and a
clip renders the same bytes twice with the label's face and the manifest's voice."""

import json

import numpy as np

from tests.support.clips import clip_builder


def test_manifest_matches_the_seeds_and_covers_dfew():
    builder = clip_builder()
    committed = json.loads(builder.MANIFEST.read_text())
    assert committed == builder.make_manifest()  # regenerate with `build.py --write-manifest`
    clips = committed["clips"]
    assert len({c["id"] for c in clips}) == len(clips)
    assert set(committed["labels"]) == {"happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"}
    for label in committed["labels"]:
        assert sum(c["label"] == label and c["split"] == "train" for c in clips) >= 20
        assert sum(c["label"] == label and c["split"] == "test" for c in clips) >= 5
    # Held out: the test split's spoken lines never occur in train.
    train_lines = {c["voice"]["line"] for c in clips if c["split"] == "train"}
    assert not train_lines & {c["voice"]["line"] for c in clips if c["split"] == "test"}
    assert len({tuple(c["face"]["background"]) for c in clips}) > len(clips) // 2  # varied


def test_a_clip_renders_deterministically(tmp_path, clip_set):
    builder = clip_builder()
    clip = json.loads(builder.MANIFEST.read_text())["clips"][0]
    builder.render(clip, tmp_path / "again.mp4")
    assert (tmp_path / "again.mp4").read_bytes() == (clip_set.dir / builder.clip_file(clip)).read_bytes()


def test_faces_differ_by_label_not_only_by_colour():
    builder = clip_builder()
    face = json.loads(builder.MANIFEST.read_text())["clips"][0]["face"]
    frames = {label: builder.draw_frame(face, label, t=1.0, frame_index=-1) for label in builder.LABELS}
    assert all(f.shape == (96, 96, 3) and f.dtype == np.uint8 for f in frames.values())
    # Same colours, sizes and position: only the expression changes, and every pair of labels differs.
    for a in builder.LABELS:
        for b in builder.LABELS:
            if a < b:
                assert np.abs(frames[a].astype(int) - frames[b].astype(int)).sum() > 0, (a, b)
