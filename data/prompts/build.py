"""Writes data/prompts/{train,test}.jsonl: text emotion-recognition prompts written for this project.

Each prompt is what a multimodal LLM would be given for a DFEW-style clip, as text: a subtitle,
a description of the visual cues and of the audio cues, then the R1-Omni / ERV instruction.
Cue phrases are hand-written per DFEW label; the test split uses subtitles and characters that
never occur in train. Deterministic (seeded). Run: `.venv/bin/python data/prompts/build.py`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

LABELS = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
INSTRUCTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters "
    "is the most obvious to you? Output the thinking process in <think> </think> and final emotion in "
    "<answer> </answer> tags."
)
CHOICES = "Choose the emotion from: " + ", ".join(LABELS) + "."

# (noun phrase, subject pronoun, possessive)
CHARACTERS = [
    ("The man", "he", "his"),
    ("The woman", "she", "her"),
    ("The young girl", "she", "her"),
    ("The old man", "he", "his"),
    ("The teenage boy", "he", "his"),
    ("The woman in the red coat", "she", "her"),
    ("The soldier", "he", "his"),
    ("The nurse", "she", "her"),
    ("The bearded man", "he", "his"),
    ("The elderly woman", "she", "her"),
    ("The boy", "he", "his"),
    ("The young mother", "she", "her"),
    ("The man in the suit", "he", "his"),
    ("The waitress", "she", "her"),
    ("The taxi driver", "he", "his"),
    ("The student", "she", "her"),
]
TEST_CHARACTERS = CHARACTERS[-4:]

SUBTITLES = {
    "happy": [
        "We did it, we actually did it!",
        "This is the best day of my life.",
        "I love it, thank you so much!",
        "Come here, I missed you so much!",
        "You got the job? That's wonderful!",
        "Look at this, isn't it beautiful?",
        "Ha, you always make me laugh.",
        "Let's celebrate tonight, my treat.",
        "I'm so proud of you.",
        "Everything turned out perfect.",
        "Finally, summer holidays!",
        "She said yes!",
        "I haven't felt this good in years.",
        "You remembered my birthday!",
        "Dinner was amazing, really.",
        "We're going to be parents!",
        "Best gift ever.",
        "Oh, I could dance all night.",
        "Welcome home, sweetheart!",
        "That was so much fun, let's do it again.",
    ],
    "sad": [
        "I don't know how to go on without her.",
        "He's gone. He's really gone.",
        "I'm sorry, I can't do this anymore.",
        "Nobody came to the party.",
        "I wanted to say goodbye.",
        "It's my fault, all of it.",
        "Why did you leave me here alone?",
        "We lost the house.",
        "I miss the way things used to be.",
        "Please don't go.",
        "The doctor said there's nothing more they can do.",
        "I thought you'd be proud of me.",
        "She doesn't remember my name anymore.",
        "I failed again.",
        "It's over between us.",
        "I just want to go home.",
        "They closed the shop today, after forty years.",
        "I never got to tell him.",
        "It doesn't matter anymore.",
        "I'll be fine. I always am.",
    ],
    "neutral": [
        "The meeting is at three o'clock.",
        "Can you pass me the salt?",
        "I'll take the bus tomorrow.",
        "The report is on your desk.",
        "Turn left at the next corner.",
        "We need two more chairs.",
        "It should arrive on Tuesday.",
        "Your seat is in row twelve.",
        "The printer is out of paper.",
        "Let me check the schedule.",
        "I'll call you when I get there.",
        "The train leaves from platform four.",
        "Please sign here and here.",
        "We close at nine on weekdays.",
        "Put the boxes by the door.",
        "I think it's going to rain later.",
        "Room two-oh-four, second floor.",
        "The file is in the blue folder.",
        "Okay, next question.",
        "Do you want coffee or tea?",
    ],
    "angry": [
        "Get out of my house!",
        "How dare you speak to me like that?",
        "I told you a hundred times!",
        "You lied to me, again!",
        "Don't you ever touch my things!",
        "This is completely unacceptable!",
        "Shut up and listen to me!",
        "You ruined everything!",
        "Who do you think you are?",
        "I'm sick of your excuses!",
        "Give it back, right now!",
        "You had one job!",
        "Stop lying to my face!",
        "I will not let you get away with this.",
        "Enough! I've heard enough!",
        "You cheated, admit it!",
        "Don't walk away when I'm talking to you!",
        "Is this some kind of joke?",
        "You'll regret this.",
        "Leave my family out of it!",
    ],
    "surprise": [
        "Wait, what? You're here?",
        "No way! Is that really you?",
        "You did all this for me?",
        "I had no idea!",
        "What just happened?",
        "Since when do you two know each other?",
        "You're kidding me, right?",
        "How did you get in here?",
        "It's open? It was locked a minute ago!",
        "Twins? Did you say twins?",
        "You won? Seriously?",
        "Oh! I didn't see you there.",
        "That's not possible.",
        "Is that a real diamond?",
        "You cut your hair!",
        "He's alive?",
        "Where did all these people come from?",
        "You speak French?",
        "The whole thing was a setup?",
        "Wow, I did not expect that.",
    ],
    "disgust": [
        "Ugh, what is that smell?",
        "That's revolting.",
        "Get that thing away from me.",
        "You eat that? Seriously?",
        "The bathroom is filthy.",
        "I can't believe you'd stoop that low.",
        "This milk has gone off.",
        "There's hair in my soup.",
        "How can anyone live like this?",
        "Don't touch me with those hands.",
        "That's the most vile thing I've ever heard.",
        "Gross, it's still moving.",
        "The whole place reeks.",
        "You make me sick.",
        "Who left this rotting in the fridge?",
        "I'd rather starve than eat that.",
        "Wipe that off, it's disgusting.",
        "Eww, it's all slimy.",
        "People like him make my skin crawl.",
        "Throw it out, please.",
    ],
    "fear": [
        "Did you hear that? Someone's in the house.",
        "Please, don't hurt me.",
        "We have to get out of here, now!",
        "I think someone is following us.",
        "Don't open that door.",
        "What was that noise?",
        "The brakes aren't working!",
        "Hide, quickly, they're coming.",
        "I can't see anything, where are you?",
        "Please, I'll give you anything you want.",
        "Something is moving in the dark.",
        "Call the police, hurry!",
        "Don't let go of my hand.",
        "I'm scared, I'm so scared.",
        "He knows where we live.",
        "The water is rising too fast!",
        "Stay quiet or they'll find us.",
        "Who's there? Answer me!",
        "We're going to crash!",
        "Don't leave me alone in here.",
    ],
}

VISUAL = {
    "happy": [
        "{who} smiles broadly, {pos} eyes crinkling at the corners.",
        "{who} laughs and throws {pos} arms in the air.",
        "{who} beams and hugs the person next to them.",
        "{who} grins and claps {pos} hands together.",
        "{who}'s cheeks are raised and {subj} is smiling with visible teeth.",
        "{who} spins around, laughing.",
        "{who} leans back with a relaxed, wide smile.",
        "{who} jumps up and down with a bright expression.",
        "{who}'s face lights up and {subj} nods eagerly.",
        "{who} giggles and covers {pos} mouth playfully.",
    ],
    "sad": [
        "{who} looks down, {pos} eyes red and wet with tears.",
        "{who}'s shoulders slump and {subj} stares at the floor.",
        "{who} wipes tears from {pos} cheeks with the back of a hand.",
        "{who}'s lips tremble and the corners of {pos} mouth turn down.",
        "{who} sits alone, hunched over, head in {pos} hands.",
        "{who} turns away and sobs quietly.",
        "{who}'s eyebrows are drawn up in the middle and {pos} gaze is empty.",
        "{who} holds an old photograph and cries.",
        "{who} moves slowly and avoids eye contact.",
        "{who} rests {pos} forehead against the window, eyes closed.",
    ],
    "neutral": [
        "{who} looks at the other person with a relaxed, unchanged face.",
        "{who} glances at a sheet of paper and then back up.",
        "{who} stands still with {pos} arms at {pos} sides and a calm expression.",
        "{who} nods once, {pos} face showing little.",
        "{who} types on a laptop, {pos} expression steady.",
        "{who} walks across the room at an even pace.",
        "{who} sits upright, hands folded, face composed.",
        "{who} points at a map without any visible reaction.",
        "{who} checks {pos} watch and looks toward the door.",
        "{who}'s face stays blank while {subj} listens.",
    ],
    "angry": [
        "{who} frowns hard, {pos} brows pulled down and together.",
        "{who} slams {pos} fist on the table.",
        "{who} clenches {pos} jaw and glares at the other person.",
        "{who} points a finger and steps forward aggressively.",
        "{who}'s face is flushed red and {pos} nostrils flare.",
        "{who} throws the papers onto the floor.",
        "{who} grits {pos} teeth and narrows {pos} eyes.",
        "{who} shoves the chair aside and leans in close.",
        "{who}'s lips are pressed into a tight line, veins visible on {pos} neck.",
        "{who} crosses {pos} arms and stares coldly.",
    ],
    "surprise": [
        "{who}'s eyes go wide and {pos} eyebrows shoot up.",
        "{who}'s mouth falls open and {subj} freezes.",
        "{who} steps back abruptly, hand on {pos} chest.",
        "{who} covers {pos} mouth with both hands, eyes wide.",
        "{who} blinks several times and stares in disbelief.",
        "{who} drops what {subj} was holding.",
        "{who}'s head jerks up and {subj} turns toward the door.",
        "{who}'s jaw drops and {pos} eyebrows stay raised.",
        "{who} gasps and looks from one person to the other.",
        "{who} stops mid-step, stunned.",
    ],
    "disgust": [
        "{who} wrinkles {pos} nose and pulls back.",
        "{who}'s upper lip curls up in revulsion.",
        "{who} turns {pos} head away and pinches {pos} nose.",
        "{who} pushes the plate away with a grimace.",
        "{who} holds the object at arm's length between two fingers.",
        "{who} squints and sticks out {pos} tongue slightly.",
        "{who} shudders and wipes {pos} hands on {pos} clothes.",
        "{who} looks the other person up and down with a sneer.",
        "{who}'s face contorts as if {subj} might gag.",
        "{who} recoils from the sink, mouth twisted.",
    ],
    "fear": [
        "{who}'s eyes are wide and darting around the room.",
        "{who} backs against the wall, trembling.",
        "{who} clutches the other person's arm tightly.",
        "{who} crouches behind the sofa, breathing fast.",
        "{who}'s face is pale and {pos} hands are shaking.",
        "{who} freezes, staring into the dark hallway.",
        "{who} raises {pos} hands defensively and shrinks back.",
        "{who}'s eyebrows are raised and pulled together, lips stretched.",
        "{who} keeps glancing over {pos} shoulder while running.",
        "{who} grips the steering wheel, knuckles white.",
    ],
}

AUDIO = {
    "happy": [
        "The voice is bright and bouncy, with laughter between words.",
        "Cheerful music plays and the speaker's pitch rises happily.",
        "The speaker talks quickly in a warm, excited tone.",
        "There is giggling and upbeat chatter in the background.",
        "The tone is light and playful, ending in a laugh.",
        "Applause and cheering can be heard.",
        "The voice sings a few words joyfully.",
        "The speaker sounds delighted, almost squealing.",
    ],
    "sad": [
        "The voice is quiet, slow and breaks off mid-sentence.",
        "Soft piano music plays; the speaker sniffles.",
        "The speaker's voice trembles and drops to a whisper.",
        "There are long pauses and a heavy sigh.",
        "Muffled sobbing is audible between the words.",
        "The tone is flat and low, almost monotone with grief.",
        "The speaker's voice cracks on the last word.",
        "Rain patters outside while the speaker speaks softly.",
    ],
    "neutral": [
        "The voice is even and conversational, at a normal volume.",
        "Office background noise; the speaker sounds matter-of-fact.",
        "The tone is calm and steady with no emphasis.",
        "The speaker talks at a regular pace over quiet street noise.",
        "A flat, informative tone, like reading a list.",
        "Ordinary room sound; the speaker is relaxed.",
        "The voice is polite and level.",
        "The speaker answers in a routine, unhurried way.",
    ],
    "angry": [
        "The speaker shouts, voice harsh and loud.",
        "The voice is low, tense and clipped, each word stressed.",
        "There is yelling and a door slams.",
        "The speaker's voice rises sharply into a furious shout.",
        "Heavy breathing, then a barked command.",
        "The tone is hostile and the words come out fast and hard.",
        "Something crashes to the floor amid raised voices.",
        "The speaker snarls the words through clenched teeth.",
    ],
    "surprise": [
        "A sharp gasp, then the voice jumps in pitch.",
        "The speaker exclaims loudly, the words tumbling out.",
        "A sudden crash of sound, then a startled 'oh!'.",
        "The voice rises into a high, incredulous question.",
        "There is a stunned silence, then a quick intake of breath.",
        "The speaker stammers, repeating the words in disbelief.",
        "A burst of 'surprise!' from several voices.",
        "The tone shifts abruptly from calm to astonished.",
    ],
    "disgust": [
        "The speaker makes a gagging sound.",
        "An audible 'ugh' and a drawn-out groan of revulsion.",
        "The voice is nasal and contemptuous, dragging the words.",
        "The speaker scoffs and exhales in distaste.",
        "A retching noise, then a shaky 'gross'.",
        "The tone is cold and sneering.",
        "A squelching sound, followed by an 'eww'.",
        "The speaker spits out the words with loathing.",
    ],
    "fear": [
        "The voice is shaky and breathless, barely above a whisper.",
        "Ominous music swells; footsteps approach.",
        "The speaker's breathing is rapid and panicked.",
        "A scream echoes, then frantic whispering.",
        "The voice quivers and rises in pitch with panic.",
        "Creaking floorboards and a pounding heartbeat sound.",
        "The speaker stutters, words interrupted by gasps.",
        "Sirens wail in the distance while the speaker pleads.",
    ],
}

# Scene context makes prompts less templated; emotion-free.
SCENES = [
    "In a kitchen at night.",
    "On a crowded street.",
    "In a hospital corridor.",
    "In a small living room.",
    "Inside a moving car.",
    "In an office with glass walls.",
    "At a train station.",
    "In a dim bedroom.",
    "At a wedding reception.",
    "In a school classroom.",
    "On a beach at sunset.",
    "In a police station.",
]


def render(subtitle: str, character, visual: str, audio: str, scene: str) -> str:
    who, subj, pos = character
    visual_text = visual.format(who=who, subj=subj, pos=pos)
    return (
        f'Scene: {scene}\nSubtitle: "{subtitle}"\nVisual cues: {visual_text}\nAudio cues: {audio}\n'
        f"{INSTRUCTION} {CHOICES}"
    )


def build(
    per_label_train: int = 75, per_label_test: int = 24, seed: int = 2026
) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train_chars, test_chars = CHARACTERS[:-4], TEST_CHARACTERS
    train, test = [], []
    for label in LABELS:
        subs = SUBTITLES[label]
        train_subs, test_subs = subs[:15], subs[15:]  # test subtitles never occur in train
        for split, n, sub_pool, chars, out in (
            ("train", per_label_train, train_subs, train_chars, train),
            ("test", per_label_test, test_subs, test_chars, test),
        ):
            seen = set()
            while len([r for r in out if r["ground_truth"] == label]) < n:
                key = (
                    rng.choice(sub_pool),
                    rng.choice(chars),
                    rng.choice(VISUAL[label]),
                    rng.choice(AUDIO[label]),
                )
                if key in seen:
                    continue
                seen.add(key)
                prompt = render(*key, scene=rng.choice(SCENES))
                out.append(
                    {
                        "id": "",
                        "prompt": prompt,
                        "ground_truth": label,
                        "dataset": "dfew-text",
                        "split": split,
                    }
                )
    for split, rows in (("train", train), ("test", test)):
        rng.shuffle(rows)
        for i, row in enumerate(rows):
            row["id"] = f"{split}-{i:04d}"
    return train, test


def main() -> None:
    here = Path(__file__).parent
    train, test = build()
    for name, rows in (("train", train), ("test", test)):
        with open(here / f"{name}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} prompts to {here / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
