"""A small, lossless word-level tokenizer for the arithmetic world, with one token per digit.

Digit-level numbers and whole words keep sequences short and make arithmetic learnable by a tiny
model. Tokens carry their leading space (``" apples"``, ``" 4"``) and the decoder fuses them back,
so decoding is exact and ``tokenize(a + b) == tokenize(a) + tokenize(b)`` whenever `a` ends with
the step separator ``"\\n"``: a context and an answer tokenize the same apart as together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from cpmi_lib.core.text_format import ANSWER_FORMAT, PROMPT_TEMPLATES
from cpmi_lib.data import world

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
#: Newline, a word or one digit or one punctuation mark (each with an optional leading space),
#: or a run of spaces.
PIECE_PATTERN = r"\n| ?[A-Za-z']+| ?\d| ?[^\sA-Za-z\d]| +"


def pieces(text: str) -> list[str]:
    """The pre-tokens of `text` (what the tokenizer's vocabulary must contain)."""
    return re.findall(PIECE_PATTERN, text)


def world_vocabulary() -> list[str]:
    """Every piece the world, the prompt and the answer line can produce, with and without space."""
    texts: list[str] = [*PROMPT_TEMPLATES, ANSWER_FORMAT, world.STEP, world.PRODUCT_START]
    texts += [s for group in world.OP_SENTENCES.values() for s in group]
    texts += list(world.START_SENTENCES) + list(world.DISTRACTORS) + list(world.QUESTIONS)
    texts += list(world.NAMES) + list(world.NAMES.values()) + list(world.OBJECTS)
    texts += list(world.CONTAINERS) + list("0123456789+-*/=.,:?'")
    words: set[str] = set()
    for text in texts:
        for piece in pieces(re.sub(r"\{[A-Za-z0-9]+\}", " ", text)):
            core = piece.strip(" ")
            if core:
                words.update({core, " " + core})
    return sorted(words | {"\n", " "})


def build_world_tokenizer(extra_words: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """The tokenizer of the embedded track's default LM (adds BOS, like Llama's)."""
    specials = [PAD, BOS, EOS, UNK]
    vocab_list = specials + world_vocabulary()
    for w in extra_words:
        for v in (w, " " + w):
            if v not in vocab_list:
                vocab_list.append(v)
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
