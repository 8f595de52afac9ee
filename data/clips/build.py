"""Synthetic emotion clips: a drawn face per emotion plus an espeak-ng line spoken with that emotion's prosody.

Renders deterministic ~2 s, 96x96 mp4 clips (H.264 or MPEG-4 video + AAC audio, muxed with PyAV)
into .cache/clips/ with {train,test}.jsonl prompt files in the project's clip format (orchestrator/
data.py): "video" relative to the JSONL, "audio": "from_video". The face (mouth, brows, eyes) and
the voice (espeak-ng pitch -p, rate -s, amplitude -a) carry the label; colours, sizes, positions,
backgrounds and voices vary per clip, drawn from a seed. data/clips/manifest.json (committed) lists
every clip's id, label, seed and parameters; binaries are never committed.

    .venv/bin/python data/clips/build.py                   # the full set (make clips)
    .venv/bin/python data/clips/build.py --per-label 2     # the first 2 clips of each label and split
    .venv/bin/python data/clips/build.py --write-manifest  # regenerate manifest.json from the seeds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
DEFAULT_OUT = HERE.parents[1] / ".cache" / "clips"
BUILDER_VERSION = 1  # bump when drawing or muxing changes: clip file names carry it
LABELS = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]  # DFEW's 7
SPLITS = {"train": 20, "test": 6}  # clips per label
SIZE, FPS, SECONDS, SUPERSAMPLE = 96, 15, 2.0, 2
INSTRUCTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters "
    "is the most obvious to you? Output the thinking process in <think> </think> and final emotion in "
    "<answer> </answer> tags. Choose the emotion from: " + ", ".join(LABELS) + "."
)

# Expression per label: mouth curve (+ smile, - frown), mouth open, mouth width (of the face radius),
# brow tilt (+ inner ends down: anger; - inner ends up: sadness, fear), brow raise, eye openness, asymmetry.
FACES = {
    "happy": dict(curve=1.0, open=0.35, width=0.9, tilt=0.0, raise_=0.05, eye=0.55, asym=0.0),
    "sad": dict(curve=-0.8, open=0.0, width=0.6, tilt=-0.7, raise_=0.1, eye=0.6, asym=0.0),
    "neutral": dict(curve=0.0, open=0.0, width=0.6, tilt=0.0, raise_=0.0, eye=1.0, asym=0.0),
    "angry": dict(curve=-0.35, open=0.2, width=0.7, tilt=0.9, raise_=-0.15, eye=0.75, asym=0.0),
    "surprise": dict(curve=0.0, open=1.0, width=0.4, tilt=0.0, raise_=0.5, eye=1.45, asym=0.0),
    "disgust": dict(curve=-0.5, open=0.12, width=0.7, tilt=0.45, raise_=-0.1, eye=0.55, asym=0.7),
    "fear": dict(curve=-0.3, open=0.6, width=0.8, tilt=-0.8, raise_=0.4, eye=1.4, asym=0.0),
}
# espeak-ng prosody per label: pitch (-p, 0-99), rate (-s, words/min), amplitude (-a, 0-200).
VOICES = {
    "happy": (72, 185, 140),
    "sad": (28, 115, 70),
    "neutral": (50, 160, 100),
    "angry": (42, 200, 190),
    "surprise": (88, 170, 160),
    "disgust": (32, 135, 115),
    "fear": (78, 225, 85),
}
LINES = {  # the last line of each label is spoken only in the test split
    "happy": ["This is the best day", "I am so glad", "We did it", "I love this", "Oh how lovely"],
    "sad": ["I miss her so much", "It is all over", "Nobody came", "I lost it again", "Why did you go"],
    "neutral": ["The bus comes at nine", "Put it on the table", "It is Tuesday", "Turn left here",
                "The door is open"],
    "angry": ["Get out of here", "How dare you", "Stop it right now", "I said no", "Leave me alone"],
    "surprise": ["Wait, what", "No way", "Is that really you", "I did not expect that", "You are here"],
    "disgust": ["That smells awful", "Ugh, gross", "Get that away", "That is revolting", "I feel sick"],
    "fear": ["Someone is there", "Please help me", "Did you hear that", "Run, quickly", "It is coming"],
}  # fmt: skip
VOICE_NAMES = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland"]
VARIANTS = ["", "+m1", "+m3", "+f1", "+f2", "+f3", "+f4"]


def make_manifest() -> dict:
    """Every clip's parameters, drawn from its seed; the committed manifest.json is this."""
    clips = []
    for split, per_label in SPLITS.items():
        for label in LABELS:
            for i in range(per_label):
                cid = f"{split}-{label}-{i:03d}"
                seed = int(hashlib.sha256(cid.encode()).hexdigest()[:8], 16)
                clips.append(
                    {"id": cid, "split": split, "label": label, "seed": seed} | _params(split, label, seed)
                )
    return {"version": BUILDER_VERSION, "size": SIZE, "fps": FPS, "seconds": SECONDS, "labels": LABELS,
            "splits": SPLITS, "clips": clips}  # fmt: skip


def _params(split: str, label: str, seed: int) -> dict:
    rng = random.Random(seed)
    lines = LINES[label][-1:] if split == "test" else LINES[label][:-1]
    pitch, rate, amp = VOICES[label]
    skin_base = rng.choice([(241, 200, 165), (224, 172, 130), (198, 134, 94), (141, 85, 54), (255, 220, 190)])
    return {
        "face": {
            "background": [rng.randrange(256) for _ in range(3)],
            "skin": [min(255, max(0, c + rng.randint(-15, 15))) for c in skin_base],
            "eye_color": rng.choice([[40, 30, 20], [30, 60, 120], [40, 90, 50], [20, 20, 20]]),
            "center": [round(48 + rng.uniform(-9, 9), 2), round(50 + rng.uniform(-7, 7), 2)],
            "radius": round(rng.uniform(27, 36), 2),
            "aspect": round(rng.uniform(0.85, 1.1), 3),
            "intensity": round(rng.uniform(0.7, 1.0), 3),
            "bob": round(rng.uniform(0, 2.0), 2),
            "blink_frame": rng.randrange(int(FPS * SECONDS)),
            "hair": rng.random() < 0.6,
            "hair_color": [rng.randrange(120) for _ in range(3)],
        },
        "voice": {
            "line": rng.choice(lines),
            "name": rng.choice(VOICE_NAMES) + rng.choice(VARIANTS),
            "pitch": min(99, max(0, pitch + rng.randint(-6, 6))),
            "rate": rate + rng.randint(-12, 12),
            "amplitude": min(200, max(10, amp + rng.randint(-12, 12))),
        },
    }


def draw_frame(face: dict, label: str, t: float, frame_index: int) -> np.ndarray:
    """One (SIZE, SIZE, 3) uint8 frame at time t: the expression ramps in over the first half second."""
    s = SUPERSAMPLE
    e = {k: v * face["intensity"] * min(1.0, 0.35 + t / 0.5) for k, v in FACES[label].items()}
    img = Image.new("RGB", (SIZE * s, SIZE * s), tuple(face["background"]))
    d = ImageDraw.Draw(img)
    r = face["radius"] * s
    cx = face["center"][0] * s
    cy = (face["center"][1] + face["bob"] * np.sin(2 * np.pi * t * 1.3)) * s
    rx, ry = r * face["aspect"], r
    if face["hair"]:
        d.ellipse(
            [cx - rx * 1.05, cy - ry * 1.12, cx + rx * 1.05, cy + ry * 0.2], fill=tuple(face["hair_color"])
        )
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(face["skin"]), outline=(60, 40, 30), width=s)
    # eyes: openness per label, closed on the blink frame
    eye_dx, eye_y, eye_w = 0.38 * rx, cy - 0.18 * ry, 0.17 * rx
    eye_h = 0.02 * ry if frame_index == face["blink_frame"] else max(0.03, 0.1 * (0.4 + e["eye"])) * ry
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse(
            [ex - eye_w, eye_y - eye_h, ex + eye_w, eye_y + eye_h], fill=(250, 250, 250), outline=(30, 20, 20)
        )
        p = min(eye_w, eye_h) * 0.7
        d.ellipse([ex - p, eye_y - p, ex + p, eye_y + p], fill=tuple(face["eye_color"]))
        # brows: the inner end (towards the nose) is lowered by tilt, both ends raised by raise_
        by = eye_y - 0.2 * ry - e["raise_"] * 0.2 * ry
        inner, outer = (ex - side * eye_w * 1.1, by + e["tilt"] * 0.1 * ry), (ex + side * eye_w * 1.2, by)
        d.line([inner, outer], fill=(50, 35, 25), width=max(2, int(0.06 * r)))
    # mouth: a curve whose middle is lowered by `curve` (a smile) and an opening below it
    mw, my = 0.5 * e["width"] * rx + 0.15 * rx, cy + 0.45 * ry
    xs = np.linspace(-1, 1, 24)
    upper = my + e["curve"] * 0.12 * ry * (1 - xs**2) + e["asym"] * 0.08 * ry * xs
    lower = upper + e["open"] * 0.28 * ry * (1 - xs**2)
    pts_up = [(cx + x * mw, y) for x, y in zip(xs, upper, strict=True)]
    if e["open"] > 0.02:
        pts_low = [(cx + x * mw, y) for x, y in zip(xs[::-1], lower[::-1], strict=True)]
        d.polygon(pts_up + pts_low, fill=(120, 20, 30), outline=(70, 10, 15))
    d.line(pts_up, fill=(110, 30, 30), width=max(2, int(0.05 * r)))
    if label == "disgust":  # a wrinkled nose
        d.line([(cx - 0.1 * rx, cy + 0.12 * ry), (cx + 0.1 * rx, cy + 0.08 * ry)], fill=(90, 60, 40), width=s)
    return np.asarray(img.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.uint8)


def speak(voice: dict, folder: Path) -> tuple[np.ndarray, int]:
    """espeak-ng's waveform (int16 mono) and its sample rate."""
    wav = folder / "line.wav"
    cmd = ["espeak-ng", "-w", str(wav), "-v", voice["name"], "-p", str(voice["pitch"]),
           "-s", str(voice["rate"]), "-a", str(voice["amplitude"]), voice["line"]]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    with wave.open(str(wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


def render(clip: dict, path: Path) -> None:
    """Write one clip (video + audio, SECONDS long) to `path` atomically."""
    import av  # PyAV: only needed when clips are written

    n_frames = int(FPS * SECONDS)
    with tempfile.TemporaryDirectory() as tmp:
        samples, rate = speak(clip["voice"], Path(tmp))
        n = int(rate * SECONDS)
        samples = np.pad(samples[:n], (0, max(0, n - samples.size)))  # trimmed or padded to the clip length
        out = Path(tmp) / "clip.mp4"
        with av.open(str(out), "w", format="mp4") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            vs = container.add_stream(codec, rate=FPS, options={"threads": "1"} if codec == "libx264" else {})
            vs.width = vs.height = SIZE
            vs.pix_fmt = "yuv420p"
            aus = container.add_stream("aac", rate=rate, layout="mono")
            for i in range(n_frames):
                frame = av.VideoFrame.from_ndarray(
                    draw_frame(clip["face"], clip["label"], i / FPS, i), format="rgb24"
                )
                container.mux(vs.encode(frame))
            container.mux(vs.encode(None))
            audio = av.AudioFrame.from_ndarray(samples[None, :].copy(), format="s16", layout="mono")
            audio.sample_rate, audio.pts = rate, 0
            container.mux(aus.encode(audio))  # the encoder re-frames and converts to its sample format
            container.mux(aus.encode(None))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two builders may render one clip
        shutil.move(str(out), tmp_path)
        os.replace(tmp_path, path)


def clip_file(clip: dict) -> str:
    """SPLIT/ID-HASH.mp4: the hash of the builder version and parameters, so a stale clip is never reused."""
    digest = hashlib.sha256(json.dumps([BUILDER_VERSION, clip], sort_keys=True).encode()).hexdigest()[:10]
    return f"{clip['split']}/{clip['id']}-{digest}.mp4"


def _render_missing(args: tuple[dict, str]) -> bool:
    clip, path = args
    if Path(path).is_file():
        return False
    render(clip, Path(path))
    return True


def build(out_dir: str | Path = DEFAULT_OUT, per_label: int | None = None, jobs: int = 1) -> dict[str, Path]:
    """Render the manifest's clips missing under out_dir; return {split: JSONL path}.

    per_label: only the first N clips of each label and split; their JSONL is SPLIT-firstN.jsonl.
    """
    out = Path(out_dir)
    manifest = json.loads(MANIFEST.read_text())
    clips = [c for c in manifest["clips"] if per_label is None or int(c["id"].rsplit("-", 1)[1]) < per_label]
    work = [(c, str(out / clip_file(c))) for c in clips]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(_render_missing, work))
    else:
        for item in work:
            _render_missing(item)
    files = {}
    for split in manifest["splits"]:
        rows = [{"id": c["id"], "prompt": INSTRUCTION, "ground_truth": c["label"], "dataset": "synthetic-clips",
                 "video": clip_file(c), "audio": "from_video"} for c in clips if c["split"] == split]  # fmt: skip
        name = f"{split}.jsonl" if per_label is None else f"{split}-first{per_label}.jsonl"
        files[split] = out / name
        tmp = files[split].with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, files[split])
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default .cache/clips)")
    parser.add_argument(
        "--per-label", type=int, default=None, help="only the first N clips per label and split"
    )
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="parallel renderers")
    parser.add_argument("--write-manifest", action="store_true", help="regenerate manifest.json and stop")
    args = parser.parse_args(argv)
    if args.write_manifest:
        MANIFEST.write_text(json.dumps(make_manifest(), indent=1) + "\n")
        print(f"wrote {MANIFEST}")
        return 0
    if shutil.which("espeak-ng") is None:
        print("build.py: espeak-ng is not installed (make sysdeps)", file=sys.stderr)
        return 1
    start = time.perf_counter()
    files = build(args.out, args.per_label, args.jobs)
    load = os.getloadavg()[0]
    print(f"clips ready in {time.perf_counter() - start:.1f} s (load average {load:.2f}): "
          + ", ".join(str(p) for p in files.values()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
