"""Tiny random ERV models for tests: built from configs, no hub, exported with the real exporter.

`build_tiny_hf(path, head)` writes a Hugging Face folder (random BERT for the canonical head,
random RoBERTa with 28 GoEmotions outputs for the goemotions head, hidden 32, 2 layers) with a
WordPiece tokenizer over a fixed vocabulary. `build_tiny_erv(path, head)` also exports it:
the ERV model folder is `path`, the torch source `path / "hf"`. `build_goemotions_roberta(path, ...)`
writes a random 28-output RoBERTa of any size with the default (realistic) initialisation, up to
RoBERTa-base shape (scripts/build_random_erv.py builds the device check's model with it).
"""

from __future__ import annotations

import string
from pathlib import Path

# Whole words the tiny tokenizer knows; anything else splits into letters (##x pieces), so every
# sentence tokenises without [UNK] and lengths vary realistically.
WORDS = """
the a an and or but of in on at to with from for by as is are was were be been his her their
he she they it its this that there here who what when not no very so then while still only
man woman girl boy person speaker people face eyes mouth voice audio video camera scene room
smiles smile laughs laugh cries tears frowns frown shouts yells trembles whispers sighs stares
looks glances clenches jaw fists brows raised wide open shut slumped shoulders head down up
happy sad angry fear afraid surprised disgust contempt anxious helpless disappointed neutral
warm bright loud quiet soft shaking breaks off mid sentence floor table wall walls wooden white
dark light shirt jacket blue red black green background behind front window door chair sits
stands walks turns away toward nods shakes lips tight tone flat calm sharp cold hot slowly
quickly suddenly again long short time moment says said nothing something joke news gift
""".split()


def _vocab(head: str) -> dict[str, int]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    if head == "goemotions":  # RoBERTa convention: <s>=0, <pad>=1, </s>=2 (pad id = padding_idx)
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    pieces = list(string.ascii_lowercase) + list(string.digits) + list(string.punctuation)
    tokens = specials + pieces + ["##" + p for p in string.ascii_lowercase + string.digits] + WORDS
    unique = list(dict.fromkeys(tokens))
    return {tok: i for i, tok in enumerate(unique)}


def build_tokenizer(head: str):
    """A transformers fast tokenizer wrapping a WordPiece `tokenizers.Tokenizer` (lower-cased)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = _vocab(head)
    if head == "goemotions":
        cls_tok, sep_tok, pad_tok, unk_tok, mask_tok = "<s>", "</s>", "<pad>", "<unk>", "<mask>"
    else:
        cls_tok, sep_tok, pad_tok, unk_tok, mask_tok = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"
    tok = Tokenizer(WordPiece(vocab, unk_token=unk_tok, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls_tok} $A {sep_tok}",
        pair=f"{cls_tok} $A {sep_tok} $B {sep_tok}",
        special_tokens=[(cls_tok, vocab[cls_tok]), (sep_tok, vocab[sep_tok])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token=cls_tok,
        sep_token=sep_tok,
        pad_token=pad_tok,
        unk_token=unk_tok,
        mask_token=mask_tok,
        model_max_length=512,
    )


def build_tiny_hf(path: str | Path, head: str = "canonical", seed: int = 0) -> Path:
    """Write a random tiny classifier + tokenizer as a Hugging Face folder at `path`."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    from reward_service.core.labels import CANONICAL_LABELS, GOEMOTIONS_LABELS

    path = Path(path)
    tokenizer = build_tokenizer(head)
    names = list(GOEMOTIONS_LABELS if head == "goemotions" else CANONICAL_LABELS)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        problem_type="multi_label_classification",
        initializer_range=0.4,
    )
    torch.manual_seed(seed)
    if head == "goemotions":
        config = RobertaConfig(
            **common,
            max_position_embeddings=160,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
        )
        model = RobertaForSequenceClassification(config)
    else:
        config = BertConfig(**common, max_position_embeddings=160, pad_token_id=0)
        model = BertForSequenceClassification(config)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def build_goemotions_roberta(
    path: str | Path,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 2,
    ffn: int = 512,
    tokenizer_dir: str | Path | None = None,
    max_positions: int = 514,
    seed: int = 0,
) -> Path:
    """A random RobertaForSequenceClassification with the 28 GoEmotions outputs, default init (0.02).

    tokenizer_dir: a Hugging Face tokenizer folder to use (e.g. the embedded MiniLM's); None = the
    tiny WordPiece tokenizer of this module. Returns `path` (an HF folder with tokenizer files).
    """
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    from reward_service.core.labels import GOEMOTIONS_LABELS

    path = Path(path)
    if tokenizer_dir is None:
        tokenizer = build_tokenizer("goemotions")
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    pad_id = int(tokenizer.pad_token_id)
    names = list(GOEMOTIONS_LABELS)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=max_positions,  # RoBERTa's positions start after padding_idx
        type_vocab_size=1,
        pad_token_id=pad_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        problem_type="multi_label_classification",
    )
    torch.manual_seed(seed)
    RobertaForSequenceClassification(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def build_tiny_erv(path: str | Path, head: str = "canonical", max_length: int = 128) -> Path:
    """Exported tiny ERV folder at `path` (model.onnx, tokenizer.json, labels.json); torch source in path/hf."""
    from reward_service.erv.export import export_erv

    path = Path(path)
    build_tiny_hf(path / "hf", head=head)
    export_erv(path / "hf", path, head=head, max_length=max_length)
    return path


def build_goemotions_roberta_erv(path: str | Path, **sizes) -> Path:
    """build_goemotions_roberta(path / "hf", **sizes) exported to the ERV folder `path` (goemotions head)."""
    from reward_service.erv.export import export_erv

    path = Path(path)
    build_goemotions_roberta(path / "hf", **sizes)
    export_erv(path / "hf", path, head="goemotions")
    return path
