"""Writes data/sft/{train,heldout}.jsonl: the SFT cold-start set, EMER style, written for this project.

Each example is a chat prompt laid out like data/prompts (scene, subtitle, visual cues, audio
cues, then the R1-Omni / ERV instruction and DFEW's 7 labels) and a target
`<think>explanation</think><answer>label</answer>` whose short explanation is grounded in
the clip's cues (what is seen, what is heard, what is said). The phrase pools below are
this file's own (different subtitles, characters and cue wording from data/prompts), so the
cold start never sees an evaluation prompt; `check_disjoint` asserts it against
data/prompts/test.jsonl. Held-out: other subtitles and characters. Deterministic.

The cold start with headroom (`cold_start_train.jsonl`, issue 16): the paper's starting point
(R1-Omni) often explains another emotion than the one it answers. `mismatch` rewrites the
explanation of exactly round(share * N) train examples (default share 0.4, seeded choice) with
the cues, noun and adjective of another emotion, keeping the answer; each row records the
emotion its explanation supports in `explanation_label`.
Run: `.venv/bin/python data/sft/build.py [--cold-start-share 0.4]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path


def _prompt_builder():
    """data/prompts/build.py: the GRPO prompts' wording, shared so SFT prompts look exactly like them."""
    path = Path(__file__).resolve().parents[1] / "prompts" / "build.py"
    spec = importlib.util.spec_from_file_location("prompts_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PROMPTS = _prompt_builder()
LABELS, INSTRUCTION, CHOICES = _PROMPTS.LABELS, _PROMPTS.INSTRUCTION, _PROMPTS.CHOICES
NOUN = {
    "happy": "happiness",
    "sad": "sadness",
    "neutral": "a calm, neutral state",
    "angry": "anger",
    "surprise": "surprise",
    "disgust": "disgust",
    "fear": "fear",
}
ADJ = {
    "happy": "happy",
    "sad": "sad",
    "neutral": "neutral",
    "angry": "angry",
    "surprise": "surprised",
    "disgust": "disgusted",
    "fear": "afraid",
}
CHARACTERS = [
    "The chef",
    "The girl in glasses",
    "The father",
    "The grandmother",
    "The young man",
    "The doctor",
]
CHARACTERS += ["The office clerk", "The farmer", "The singer", "The little boy", "The bride", "The detective"]
HELDOUT_CHARACTERS = ["The pilot", "The librarian", "The fisherman"]
SCENES = ["In a bakery.", "On a rooftop at dusk.", "In a garage.", "In a crowded bus.", "At a farm gate."]
SCENES += ["In a courtroom.", "In a hotel lobby.", "By a river.", "In a basement.", "At a birthday party."]

# Per label: subtitles (the last 3 are held out), visual cues as (prompt sentence, explanation
# phrase), audio cues as (prompt sentence, explanation phrase).
SUBTITLES = {
    "happy": ["We won the cup!", "You made my whole week.", "Oh, it's perfect, I love it.",
              "Grandpa is coming home tomorrow!", "Best pancakes ever, honestly.", "I passed every exam!",
              "Let's dance, come on!", "You two look wonderful together.", "It finally stopped raining!",
              "I can't stop smiling today.", "We're going to Paris!", "That was so much fun.",
              "Thank you, this means the world.", "Our baby is healthy!"],
    "sad": ["She isn't coming back, is she?", "I kept his letters, all of them.", "Nobody came to my show.",
            "I'm sorry I wasn't there.", "The house feels empty now.", "We had to put the dog down.",
            "I really thought he loved me.", "I just miss her so much.", "Everything we built is gone.",
            "It's the last time I'll see this room.", "They closed the shop for good.",
            "I don't have anyone left.", "Why did it have to be him?", "Goodbye, old friend."],
    "neutral": ["The meeting starts at ten.", "Please sign on the second page.", "The bus leaves from gate four.",
                "I'll have the soup, thanks.", "Turn left after the bridge.", "The report is on your desk.",
                "We close at six on Sundays.", "Your order number is twelve.", "It's about forty minutes by car.",
                "Put the boxes by the door.", "The printer is on the third floor.", "Next week works for me.",
                "The keys are in the drawer.", "He called about the invoice."],
    "angry": ["Get out of my house!", "You lied to me again!", "Don't you dare touch that!",
              "I've had enough of your excuses!", "Who told you to sell my car?", "This is the third time!",
              "You ruined everything!", "Stop lying to my face!", "How could you do this to us?",
              "I'm done covering for you!", "Give me back my money now!", "Shut up and listen to me!",
              "You had one job!", "Never speak to my sister again!"],
    "surprise": ["Wait, you're pregnant?", "No way, is that really you?", "You did all this for me?",
                 "It was you the whole time?", "Since when can you play piano?", "The lottery ticket won?",
                 "You're back already?", "Hold on, they're twins?", "He proposed, just like that?",
                 "I had no idea!", "Is that a real tiger?", "You found my ring?",
                 "The test was today?", "What, the boss quit?"],
    "disgust": ["Ugh, there's hair in my soup.", "That smell is unbearable.", "Don't make me touch that.",
                "The fridge is full of mold.", "He chewed with his mouth open, gross.", "Who left this rotting here?",
                "I can't even look at it.", "That's the filthiest bathroom ever.", "The milk has gone sour.",
                "Get that slimy thing away.", "There are maggots in the bin.", "It tastes like old socks.",
                "How can anyone eat that?", "Wipe that off, it's disgusting."],
    "fear": ["Did you hear that downstairs?", "Please don't hurt me.", "Someone is following us.",
             "The brakes aren't working!", "Lock the door, quickly!", "I think he has a gun.",
             "Don't go into the water.", "The lights just went out.", "It's getting closer!",
             "We have to hide, now.", "Who's there?", "Something moved in the dark.",
             "Don't leave me alone here.", "The ice is cracking!"],
}  # fmt: skip
VISUAL = {
    "happy": [("{c} beams and throws both arms in the air.", "wide beaming smile and raised arms"),
              ("{c} laughs so hard that the eyes crinkle.", "crinkled eyes and open laughter"),
              ("{c} hugs a friend and bounces on the spot.", "warm hug and bouncing steps"),
              ("{c} grins and gives a thumbs up.", "broad grin and thumbs up")],
    "sad": [("{c} stares at a photo with wet eyes.", "wet eyes fixed on a photo"),
            ("{c} sits hunched with the head in both hands.", "hunched posture and lowered head"),
            ("{c} wipes away tears and looks at the floor.", "tears and downcast gaze"),
            ("{c}'s chin quivers as the mouth turns down.", "quivering chin and drooping mouth")],
    "neutral": [("{c} reads from a clipboard with a relaxed face.", "relaxed face and steady reading"),
                ("{c} stands still with an even expression.", "still stance and even expression"),
                ("{c} nods once and keeps typing.", "brief nod and routine typing"),
                ("{c} hands over a folder without any visible reaction.", "unchanged face while handing over a folder")],
    "angry": [("{c} slams a fist on the table and glares.", "fist slam and hard glare"),
              ("{c}'s face turns red, jaw clenched.", "red face and clenched jaw"),
              ("{c} points a finger and steps forward aggressively.", "jabbing finger and aggressive step"),
              ("{c} throws the papers to the ground.", "thrown papers and tense shoulders")],
    "surprise": [("{c}'s jaw drops and the eyebrows shoot up.", "dropped jaw and raised eyebrows"),
                 ("{c} freezes mid-step with wide eyes.", "sudden freeze and wide eyes"),
                 ("{c} covers the mouth with both hands, eyes wide.", "hands over mouth and wide eyes"),
                 ("{c} jerks back and blinks rapidly.", "jerk backwards and rapid blinking")],
    "disgust": [("{c} wrinkles the nose and pushes the plate away.", "wrinkled nose and pushed-away plate"),
                ("{c} curls the upper lip and turns away.", "curled lip and turned head"),
                ("{c} holds the object at arm's length, grimacing.", "grimace and outstretched arm"),
                ("{c} gags and covers the nose with a sleeve.", "gagging and covered nose")],
    "fear": [("{c} backs into the wall, eyes darting around.", "retreat to the wall and darting eyes"),
             ("{c} trembles and clutches a flashlight.", "trembling hands and tight grip"),
             ("{c} crouches behind a car, breathing fast.", "crouching hide and fast breathing"),
             ("{c}'s face goes pale as the eyes widen.", "pale face and widened eyes")],
}  # fmt: skip
AUDIO = {
    "happy": [("Cheerful music and clapping.", "cheerful music"), ("The voice is bright and lively.", "bright voice"),
              ("Giggles and excited chatter.", "excited chatter")],
    "sad": [("Slow cello music; a quiet sob.", "quiet sobbing"), ("The voice breaks and trails off.", "breaking voice"),
            ("Rain taps on the window; a long sigh.", "long sigh")],
    "neutral": [("Office hum and keyboard clicks.", "plain office sounds"),
                ("The voice is even and unhurried.", "even voice"),
                ("Distant traffic; normal conversational tone.", "normal tone")],
    "angry": [("Shouting and a door banging.", "shouting"), ("The voice is loud, harsh and clipped.", "harsh voice"),
              ("Heavy breathing between yelled words.", "yelling")],
    "surprise": [("A sharp gasp, then silence.", "sharp gasp"), ("The voice jumps to a high pitch.", "high-pitched voice"),
                 ("A startled 'oh!' over sudden music.", "startled cry")],
    "disgust": [("A retching sound and a groan.", "retching sound"), ("The voice drips with revulsion.", "revolted voice"),
                ("A loud 'eww' and coughing.", "loud 'eww'")],
    "fear": [("Tense strings and a pounding heartbeat.", "pounding heartbeat"),
             ("The voice is a shaky whisper.", "shaky whisper"),
             ("Footsteps creak closer; quick panicked breaths.", "panicked breaths")],
}  # fmt: skip
THINK_TEMPLATES = [
    '{who}\'s {vis} show {noun}. The {aud} and the line "{sub}" also sound {adj}.',
    '{who} says "{sub}" with a {aud}, which sounds {adj}. The {vis} confirm the {noun}.',
    "The {vis} express {noun}. With the {aud}, the character clearly feels {adj}.",
]


def render_prompt(scene: str, sub: str, who: str, visual: str, audio: str) -> str:
    return (
        f'Scene: {scene}\nSubtitle: "{sub}"\nVisual cues: {visual.format(c=who)}\nAudio cues: {audio}\n'
        f"{INSTRUCTION} {CHOICES}"
    )


def build(per_label_train: int = 50, per_label_heldout: int = 10, seed: int = 4) -> tuple[list, list]:
    rng = random.Random(seed)
    train, heldout = [], []
    for label in LABELS:
        for split, n, subs, chars, out in (
            ("train", per_label_train, SUBTITLES[label][:-3], CHARACTERS, train),
            ("heldout", per_label_heldout, SUBTITLES[label][-3:], HELDOUT_CHARACTERS, heldout),
        ):
            seen = set()
            while len([e for e in out if e["label"] == label]) < n:
                sub, who = rng.choice(subs), rng.choice(chars)
                (vis, vis_np), (aud, aud_np) = rng.choice(VISUAL[label]), rng.choice(AUDIO[label])
                scene, template = rng.choice(SCENES), rng.choice(THINK_TEMPLATES)
                key = (sub, who, vis, aud, scene)
                if key in seen:
                    continue
                seen.add(key)
                think = template.format(
                    who=who, vis=vis_np, aud=aud_np, sub=sub, noun=NOUN[label], adj=ADJ[label]
                )
                think = think[0].upper() + think[1:]
                out.append(
                    {
                        "id": f"sft-{split}-{len(out):04d}",
                        "messages": [{"role": "user", "content": render_prompt(scene, sub, who, vis, aud)}],
                        "target": f"<think>{think}</think><answer>{label}</answer>",
                        "label": label,
                    }
                )
    rng.shuffle(train)
    return train, heldout


COLD_START_SHARE = 0.4
COLD_START_FILE = "cold_start_train.jsonl"


def _think(rng: random.Random, label: str, who: str, sub: str) -> str:
    """An explanation supporting `label`, in the train set's templates."""
    (_, vis_np), (_, aud_np) = rng.choice(VISUAL[label]), rng.choice(AUDIO[label])
    think = rng.choice(THINK_TEMPLATES).format(
        who=who, vis=vis_np, aud=aud_np, sub=sub, noun=NOUN[label], adj=ADJ[label]
    )
    return think[0].upper() + think[1:]


def mismatch(rows: list[dict], share: float = COLD_START_SHARE, seed: int = 16) -> list[dict]:
    """Copies of `rows` where round(share * len) explanations support another emotion than the answer."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"cold-start share must be in [0, 1], got {share}")
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(rows)), round(share * len(rows))))
    out = []
    for i, row in enumerate(rows):
        row = dict(row, explanation_label=row["label"])
        if i in chosen:
            content = row["messages"][0]["content"]
            sub = content.split('Subtitle: "', 1)[1].split('"\n', 1)[0]
            visual = content.split("Visual cues: ", 1)[1]
            who = next(c for c in CHARACTERS + HELDOUT_CHARACTERS if visual.startswith(c))
            other = rng.choice([x for x in LABELS if x != row["label"]])
            row["target"] = f"<think>{_think(rng, other, who, sub)}</think><answer>{row['label']}</answer>"
            row["explanation_label"] = other
        out.append(row)
    return out


def check_disjoint(examples: list[dict], eval_file: Path) -> None:
    """No SFT subtitle occurs in an evaluation prompt."""
    if not eval_file.is_file():
        return
    eval_text = eval_file.read_text()
    for e in examples:
        sub = e["messages"][0]["content"].split('Subtitle: "', 1)[1].split('"\n', 1)[0]
        assert f'"{sub}"' not in eval_text, f"SFT subtitle {sub!r} occurs in {eval_file}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-start-share", type=float, default=COLD_START_SHARE,
                        help="share of cold-start explanations that support another emotion (default %(default)s)")  # fmt: skip
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    train, heldout = build()
    for name in ("test.jsonl", "train.jsonl"):
        check_disjoint(train + heldout, here.parent / "prompts" / name)
    cold = mismatch(train, args.cold_start_share)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout), (COLD_START_FILE, cold)):
        with open(here / name, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    off = sum(r["explanation_label"] != r["label"] for r in cold)
    print(f"wrote {len(train)} train and {len(heldout)} held-out examples to {here}")
    print(
        f"wrote {COLD_START_FILE}: {off} of {len(cold)} explanations support another emotion than the answer"
    )


if __name__ == "__main__":
    main()
