"""Build and validate the synthetic ERV corpus (data/erv/train.jsonl, data/erv/test.jsonl).

Runs offline on the developer machine (stdlib only, deterministic for a given --seed).
Every hand-written item of pools.json (a cue, quote, adjective, frame, sentence) is a
"source"; each source is assigned to train or test before any sentence is rendered, and a
sentence is rendered only from sources of one side, so paraphrases never straddle the split.

    python data/erv/build_corpus.py            # write train/test, print stats
    python data/erv/build_corpus.py --check    # validate the committed files only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
# Hand-written phrase pools; placeholders: {s} subject, {p} he/she, {o} him/her, {pos} his/her,
# {sp} subject possessive (capitalised forms {S}, {P}, {POS}, {SP}).
P = SimpleNamespace(**json.loads((HERE / "pools.json").read_text(encoding="utf-8")))

CANONICAL = [
    "happy",
    "angry",
    "sad",
    "neutral",
    "surprise",
    "disgust",
    "fear",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
]
TEST_SHARE = 0.2
# sentences per emotion label before multi-label pairs are added (train + test)
PER_LABEL = 300
# share of each emotion's sentences per kind; "hand" sentences are all used once on top
MIX = {
    "visual": 0.22,
    "np": 0.08,
    "au": 0.04,
    "audio": 0.18,
    "subtitle": 0.16,
    "explicit": 0.16,
    "compound": 0.12,
}
PAIR_UNIT = 42  # multi-label sentences per unit of pair weight

COMPOUND_FRAMES = [
    "{S} {vp}, which suggests {noun}.",
    "The fact that {s} {vp} shows that {p} is {adj}.",
    "Because {s} {vp}, {p} seems {adj}.",
    "{S} {vp}, a clear sign of {noun}.",
    "{S} {vp}, indicating {noun}.",
    "Since {p} {vp}, it is likely that {p} feels {adj}.",
    "{S} {vp}; this points to {noun}.",
    "{S} {vp}, so {p} is probably {adj}.",
    "When {s} {vp}, it becomes clear that {p} is {adj}.",
    "{S} {vp}, which is typical of someone who is {adj}.",
    "The way {s} {vp} reveals {noun}.",
    "{S} {vp}, and this reflects {noun}.",
    "Seeing that {s} {vp}, we can say {p} is {adj}.",
]
AUDIO_COMPOUND_FRAMES = [
    "{C}, which reveals {noun}.",
    "In the audio, {c}, suggesting that {p} is {adj}.",
    "{C}, a vocal sign of {noun}.",
    "Since {c}, the speaker sounds {adj}.",
    "The audio, in which {c}, conveys {noun}.",
    "{C}; together with the visuals, this implies {noun}.",
]
JOINERS = ["{a} and {b}", "{a}, then {b}", "{a} and then {b}", "{a}; a moment later {p} {b}"]
PRONOUNS = {"m": ("he", "him", "his", "himself"), "f": ("she", "her", "her", "herself")}
SPLIT_RE = re.compile(r'(?<=[.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)')


# ---------------------------------------------------------------- split of sources
def split_pool(items: list[str], kind: str, seed: int) -> dict[str, list[str]]:
    """Assign ceil(TEST_SHARE * n) items of a pool to test, chosen by a seeded hash."""

    def key(item: str) -> str:
        return hashlib.sha256(f"{seed}|{kind}|{item}".encode()).hexdigest()

    ranked = sorted(items, key=key)
    n_test = max(1, round(TEST_SHARE * len(ranked))) if len(ranked) > 1 else 0
    return {"test": ranked[:n_test], "train": ranked[n_test:]}


class Cycler:
    """Round-robin over a shuffled pool so every source is used about equally often."""

    def __init__(self, items: list[str], rng: random.Random):
        self.items, self.rng, self.queue = list(items), rng, []

    def next(self) -> str:
        if not self.queue:
            self.queue = self.items[:]
            self.rng.shuffle(self.queue)
        return self.queue.pop()


# ---------------------------------------------------------------- rendering
def fill(template: str, slots: dict[str, str], rng: random.Random) -> str:
    """Fill content slots, then subject/pronoun placeholders (content may contain {pos} etc.)."""
    text, gender_subject = template, rng.choice(P.SUBJECTS)
    subject, gender = gender_subject
    gender = gender if gender != "x" else rng.choice("mf")
    p, o, pos, refl = PRONOUNS[gender]
    values = dict(slots)
    values.update(
        s=subject,
        S=subject[0].upper() + subject[1:],
        p=p,
        P=p.capitalize(),
        o=o,
        pos=pos,
        POS=pos.capitalize(),
        sp=subject + "'s",
        SP=subject[0].upper() + subject[1:] + "'s",
        n=str(rng.randint(2, 40)),
        t=str(rng.randint(2, 15)),
    )
    for _ in range(3):  # slots nest at most twice
        text = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    text = text.replace(o + "self", refl)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"([?!.])(['\"])\.$", r"\1\2", text)  # "...me?'." -> "...me?'"
    return text[0].upper() + text[1:]


def anchor_clause(frame: str, clause: str, rng: random.Random) -> str:
    """Give an audio clause a full subject when the frame names nobody (else 'her voice' floats)."""
    if not any(tok in frame for tok in ("{s}", "{p}", "{pos}", "{S}")) and rng.random() < 0.6:
        clause = re.sub(r"^\{pos\} ", "{sp} ", clause)
        clause = re.sub(r"^\{p\} ", "{s} ", clause)
    return clause


def cap_clause(clause: str) -> str:
    return (
        "{" + clause[1:].split("}", 1)[0].upper() + "}" + clause.split("}", 1)[1]
        if clause.startswith("{")
        else clause[0].upper() + clause[1:]
    )


def audio_sentence(frame: str, clause: str, extra: dict, rng: random.Random) -> str:
    if clause.startswith("{p} ") and "{p}" in frame:  # avoid "When he speaks, he speaks ..."
        frame = frame.replace("When {p} speaks, ", "").replace("As {p} talks, ", "")
    clause = anchor_clause(frame, clause, rng)
    return fill(frame, {"c": clause, "C": cap_clause(clause), **extra}, rng)


# ---------------------------------------------------------------- generators
class Side:
    """All pools of one split side, with cyclers."""

    def __init__(self, side: str, seed: int, rng: random.Random):
        self.rng = rng

        def pool(items, kind):
            return split_pool(list(items), kind, seed)[side]

        self.frames = {
            name: pool(getattr(P, name), name)
            for name in (
                "VISUAL_FRAMES",
                "NP_FRAMES",
                "AUDIO_FRAMES",
                "AU_FRAMES",
                "SUBTITLE_FRAMES",
                "EXPLICIT_FRAMES",
            )
        }
        self.frames["COMPOUND"] = pool(COMPOUND_FRAMES, "COMPOUND")
        self.frames["AUDIO_COMPOUND"] = pool(AUDIO_COMPOUND_FRAMES, "AUDIO_COMPOUND")
        self.lab = {
            lab: {k: Cycler(pool(v, f"{lab}/{k}"), rng) for k, v in spec.items()}
            for lab, spec in P.LABELS.items()
        }
        self.neutral = {k: Cycler(pool(v, f"neutral/{k}"), rng) for k, v in P.NEUTRAL.items()}
        self.hand = {lab: pool(spec["hand"], f"{lab}/hand") for lab, spec in P.LABELS.items()}
        self.neutral_hand = pool(P.NEUTRAL["hand"], "neutral/hand")
        self.pairs = [
            (
                a,
                b,
                w,
                Cycler(pool(adj, f"{a}+{b}/adj"), rng),
                Cycler(pool(noun, f"{a}+{b}/noun"), rng),
                pool(hand, f"{a}+{b}/hand"),
            )
            for a, b, w, adj, noun, hand in (tuple(d.values()) for d in P.PAIRS)
        ]

    def frame(self, name: str) -> str:
        return self.rng.choice(self.frames[name])


def emotion_sentence(side: Side, label: str, kind: str) -> str:
    rng, c = side.rng, side.lab[label]
    if kind == "visual":
        return fill(side.frame("VISUAL_FRAMES"), {"vp": c["vp"].next()}, rng)
    if kind == "np":
        return fill(side.frame("NP_FRAMES"), {"np": c["np"].next()}, rng)
    if kind == "au":
        return fill(side.frame("AU_FRAMES"), {"au": c["au"].next()}, rng)
    if kind == "audio":
        return audio_sentence(side.frame("AUDIO_FRAMES"), c["voice"].next(), {}, rng)
    if kind == "subtitle":
        slots = {
            "q": c["quote"].next(),
            "interp": c["interp"].next(),
            "say": c["say"].next(),
            "manner": c["manner"].next(),
        }
        return fill(side.frame("SUBTITLE_FRAMES"), slots, rng)
    if kind == "explicit":
        return fill(side.frame("EXPLICIT_FRAMES"), {"adj": c["adj"].next(), "noun": c["noun"].next()}, rng)
    if kind == "compound":
        named = {"adj": c["adj"].next(), "noun": c["noun"].next()}
        if rng.random() < 0.3:
            return audio_sentence(side.frame("AUDIO_COMPOUND"), c["voice"].next(), named, rng)
        return fill(side.frame("COMPOUND"), {"vp": c["vp"].next(), **named}, rng)
    raise ValueError(kind)


def pair_sentence(side: Side, pair: tuple) -> str:
    a, b, _, adj, noun, _ = pair
    rng, ca, cb = side.rng, side.lab[a], side.lab[b]
    if rng.random() < 0.5:
        a, b, ca, cb = b, a, cb, ca  # either emotion may come first
    kind = rng.choices(["visual", "audio+visual", "explicit", "subtitle"], [0.35, 0.2, 0.3, 0.15])[0]
    if kind == "visual":
        vpa, vpb = ca["vp"].next(), cb["vp"].next()
        joined = rng.choice(JOINERS).replace("{a}", vpa).replace("{b}", vpb)
        return fill(side.frame("VISUAL_FRAMES"), {"vp": joined}, rng)
    if kind == "audio+visual":
        frame = rng.choice(
            [
                "{C}, and {p} {vp}.",
                "{C}, while visually {p} {vp}.",
                "{S} {vp}; in the audio, {c}.",
                "In the audio, {c}, and in the video {p} {vp}.",
            ]
        )
        clause = ca["voice"].next()
        if not frame.startswith("{S}"):  # the clause introduces the person, so name them there
            clause = re.sub(r"^\{pos\} ", "{sp} ", re.sub(r"^\{p\} ", "{s} ", clause))
        return fill(frame, {"c": clause, "C": cap_clause(clause), "vp": cb["vp"].next()}, rng)
    if kind == "explicit":
        return fill(side.frame("EXPLICIT_FRAMES"), {"adj": adj.next(), "noun": noun.next()}, rng)
    frame = rng.choice(
        [f for f in side.frames["SUBTITLE_FRAMES"] if "{manner}" in f] or ["{S} says '{q}' {manner}."]
    )
    return fill(frame, {"q": ca["quote"].next(), "say": ca["say"].next(), "manner": cb["manner"].next()}, rng)


def neutral_sentence(side: Side, kind: str) -> str:
    rng, c = side.rng, side.neutral

    def article(word: str) -> str:
        return ("an " if word[0] in "aeio" else "a ") + word

    if kind == "clothing":
        frame = c["clothing_frames"].next()
        text = fill(
            frame.replace("a {c} {g}", "{cg}").replace("a {c2} {g2}", "{cg2}"),
            {
                "cg": article(f"{c['colors'].next()} {c['garments'].next()}"),
                "cg2": article(f"{c['colors'].next()} {c['garments'].next()}"),
            },
            rng,
        )
        return text
    if kind == "place":
        return fill(c["place_frames"].next(), {"place": c["places"].next()}, rng)
    if kind == "sound":
        snd = c["sounds"].next()
        return fill(c["sound_frames"].next(), {"snd": snd, "Snd": snd[0].upper() + snd[1:]}, rng)
    if kind == "object":
        obj = c["objects"].next()
        return fill(c["object_frames"].next(), {"obj": obj, "obj_cap": obj[0].upper() + obj[1:]}, rng)
    if kind == "posture":
        return fill(c["posture_frames"].next(), {"pos_": c["postures"].next()}, rng)
    if kind == "quote":
        return fill(c["neutral_quote_frames"].next(), {"q": c["neutral_quotes"].next()}, rng)
    if kind == "explicit":
        return fill(
            side.frame("EXPLICIT_FRAMES"), {"adj": c["calm_adj"].next(), "noun": c["calm_noun"].next()}, rng
        )
    return fill(c[kind].next(), {}, rng)  # lights, camera, calm_face, calm_voice


NEUTRAL_MIX = {
    "clothing": 55,
    "place": 45,
    "lights": 22,
    "camera": 55,
    "sound": 35,
    "object": 50,
    "posture": 35,
    "calm_face": 40,
    "calm_voice": 28,
    "quote": 35,
    "explicit": 18,
}


def norm(text: str) -> str:
    """Case/punctuation-normalised form used for deduplication."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def build(seed: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"train": [], "test": []}
    seen: set[str] = set()
    for side_name in ("train", "test"):
        share = TEST_SHARE if side_name == "test" else 1 - TEST_SHARE
        rng = random.Random(f"{seed}/{side_name}")
        side = Side(side_name, seed, rng)
        rows = out[side_name]

        def add(text: str, labels: list[str], rows=rows) -> bool:
            key = norm(text)
            if key in seen or len(SPLIT_RE.split(text)) != 1:
                return False
            seen.add(key)
            rows.append({"text": text, "labels": labels})
            return True

        def produce(make, labels: list[str], n: int) -> None:
            made = tries = 0
            while made < n and tries < n * 30:
                tries += 1
                made += add(make(), labels)

        for label in P.LABELS:
            for kind, frac in MIX.items():
                produce(
                    lambda label=label, kind=kind, side=side: emotion_sentence(side, label, kind),
                    [label],
                    round(PER_LABEL * frac * share),
                )
            for text in side.hand[label]:
                add(text, [label])
        for kind, n in NEUTRAL_MIX.items():
            produce(lambda kind=kind, side=side: neutral_sentence(side, kind), ["neutral"], round(n * share))
        for text in side.neutral_hand:
            add(text, ["neutral"])
        for pair in side.pairs:
            a, b, weight, _, _, hand = pair
            produce(
                lambda pair=pair, side=side: pair_sentence(side, pair),
                [a, b],
                round(PAIR_UNIT * weight * share),
            )
            for text in hand:
                add(text, [a, b])
        rng.shuffle(rows)
    return out


# ---------------------------------------------------------------- validation and stats
def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validate(train: list[dict], test: list[dict]) -> list[str]:
    """Return a list of problems (empty when the corpus meets the issue's constraints)."""
    problems, rows = [], train + test
    counts = Counter(lab for r in rows for lab in r["labels"])
    if len(rows) < 3000:
        problems.append(f"only {len(rows)} sentences")
    for r in rows:
        if set(r) != {"text", "labels"} or not r["labels"] or set(r["labels"]) - set(CANONICAL):
            problems.append(f"bad row {r}")
        if "{" in r["text"] or "}" in r["text"]:
            problems.append(f"unfilled placeholder: {r['text']}")
    for lab in CANONICAL:
        if counts[lab] < 150:
            problems.append(f"label {lab} has {counts[lab]} < 150")
    keys = [norm(r["text"]) for r in rows]
    if len(set(keys)) != len(keys):
        problems.append(f"{len(keys) - len(set(keys))} normalised duplicates")
    if len(test) < 0.15 * len(rows):
        problems.append(f"test share {len(test) / len(rows):.3f} < 0.15")
    return problems


def skeleton(text: str) -> list[str]:
    """Tokens with subjects and pronouns replaced by X, for frame-diversity counts."""
    t = norm(text)
    for subj, _ in sorted(P.SUBJECTS, key=lambda s: -len(s[0])):
        t = re.sub(rf"\b{re.escape(subj)}\b", "X", t)
    return [("X" if w in {"he", "she", "his", "her", "him", "himself", "herself"} else w) for w in t.split()]


def stats(train: list[dict], test: list[dict]) -> dict:
    rows = train + test
    tokens = [w for r in rows for w in norm(r["text"]).split()]
    skels = [skeleton(r["text"]) for r in rows]
    grams = [tuple(s[i : i + 4]) for s in skels for i in range(len(s) - 3)]
    per_label_frames = {
        lab: len({tuple(skeleton(r["text"])[:4]) for r in rows if lab in r["labels"]}) for lab in CANONICAL
    }
    train_sets = [set(norm(r["text"]).split()) for r in train]
    overlaps = []
    for r in test:
        words = set(norm(r["text"]).split())
        overlaps.append(max(len(words & t) / len(words | t) for t in train_sets))
    overlaps.sort()
    return {
        "total": len(rows),
        "train": len(train),
        "test": len(test),
        "test_share": round(len(test) / len(rows), 3),
        "multi_label_share": round(sum(len(r["labels"]) > 1 for r in rows) / len(rows), 3),
        "label_counts": dict(Counter(lab for r in rows for lab in r["labels"]).most_common()),
        "label_counts_test": dict(Counter(lab for r in test for lab in r["labels"]).most_common()),
        "type_token_ratio": round(len(set(tokens)) / len(tokens), 4),
        "vocabulary": len(set(tokens)),
        "distinct_4gram_ratio": round(len(set(grams)) / len(grams), 3),
        "distinct_opening_4grams": len({tuple(s[:4]) for s in skels}),
        "distinct_opening_4grams_per_label": per_label_frames,
        "test_vs_train_max_jaccard_median": round(overlaps[len(overlaps) // 2], 3),
        "test_vs_train_max_jaccard_p95": round(overlaps[int(len(overlaps) * 0.95)], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=2026, help="seed for the split and the generator")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for train.jsonl and test.jsonl")
    ap.add_argument("--check", action="store_true", help="only validate the existing files")
    args = ap.parse_args()
    if not args.check:
        corpus = build(args.seed)
        for name, rows in corpus.items():
            with open(args.out / f"{name}.jsonl", "w") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    train, test = load(args.out / "train.jsonl"), load(args.out / "test.jsonl")
    problems = validate(train, test)
    print(json.dumps(stats(train, test), indent=1))
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
