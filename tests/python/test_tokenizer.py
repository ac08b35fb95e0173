"""`evoq tokenize` against the Hugging Face tokenizers.

Oracles:
- vocab.json + merges.txt + tokenizer_config.json (tests/data/qwen2-vl-2b): transformers'
  AutoTokenizer (Qwen2Tokenizer, backed by the Rust `tokenizers` library), local files only.
- tokenizer.json (tests/data/qwen3-tokenizer): the `tokenizers` library's Tokenizer.from_file.
- Chat template: transformers' Qwen2VLProcessor (Pillow image processor) given the chat template of
  Qwen/Qwen2-VL-2B-Instruct below; its apply_chat_template + __call__ (which expands each
  <|image_pad|> to grid_thw.prod() // 4 copies) gives the expected ids for real images of odd sizes.
  (tests/data/qwen2-vl-2b/chat_template.json is the *base* model's template, which has no roles.)
"""
import json
import os
import random
import subprocess
import tempfile
import unicodedata

import numpy as np
import pytest

EVOQ = os.environ["EVOQ_BIN"]
DATA = os.environ["EVOQ_TEST_DATA"]
QWEN2 = os.path.join(DATA, "qwen2-vl-2b")
QWEN3 = os.path.join(DATA, "qwen3-tokenizer")

# chat_template of Qwen/Qwen2-VL-2B-Instruct (same for Qwen2.5-VL-*-Instruct).
INSTRUCT_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The paper's prompts (model card, section 3).
C_COMPARE = (
    "You are performing an image quality assessment task. Compare the two images and decide which one has "
    "better perceptual quality. Answer strictly with the index of the better image: 0 if the first image is "
    "better, or 1 if the second image is better."
)
C_SCORE = (
    "You are doing the image quality assessment task. Here is the question: What is your overall rating on "
    "the quality of this picture? The rating should be a float between 1 and 5, rounded to two decimal "
    "places, with 1 representing very poor quality and 5 representing excellent quality."
)
REASONING = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final "
    "answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST "
    "BE put in boxed{}."
)


def fixed_corpus():
    accented = "café naïve résumé Ångström Zoë Dvořák"
    return [
        "Hello world", "  Hello", "Hello  world", "   leading spaces", "trailing spaces   ", " ", "",
        "The quick brown fox jumps over the lazy dog.",
        "a\n\nb", "\n\n\n", "\t\tindented\tcode", "x \t \n y", "line\r\nwindows\r\n", "end\n", "  \n  \n",
        "1234567890", "3.14159", "The year 2024 had 366 days; 1,000,000 people.", "x2 = y1 + 42",
        "I'm you're it's we've he'll she'd", "I'M YOU'RE IT'S WE'VE HE'LL SHE'D", "'S 'LL 'Ll 'lL", "don'T",
        "o'clock rock'n'roll", "it'\u017f", "''quoted''",
        "你好，世界！", "日本語のテキストです。", "한국어 문장입니다.", "Привет, мир!", "مرحبا بالعالم",
        "नमस्ते दुनिया", "Γειά σου Κόσμε",
        "😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇯🇵", "I ❤️ NY", "🙂🙂🙂!!!",
        accented, unicodedata.normalize("NFD", accented), "\u212b \u2126 e\u0301 \u1100\u1161\u11a8",
        "\ufb01ne \u00bd \u2460",
        "a\u00a0b", "a\u3000b", "x\u2028y\u2029z", "\u0085next", "zero\u200bwidth", "mongolian\u180evs",
        "\u000b\u000c vt ff", "\u001c\u001d\u001e\u001f seps", "\u2000\u2001\u2002 spaces\u202f\u205f",
        "<|im_start|>user\nhi<|im_end|>", "a<|image_pad|><|image_pad|>b",
        "<|vision_start|><|image_pad|><|vision_end|>Describe this image.", "<|im_end", "<|endoftext|><|endoftext|>",
        "x<|im_start|>", "<|im_start|><|im_end|>", "<think> </think>", "<<|im_end|>>", "<|im_end|>\u0301",
        C_COMPARE, C_SCORE, REASONING, C_SCORE + " " + REASONING,
        "<think>The image is sharp.</think> boxed{4.25}", "boxed{0}", "1", "0",
        ("Mixed: The image_quality score is 3.75/5 -- good!\n\n" * 5) + "END",
        "```python\ndef f(x):\n    return x * 2  # doubled\n```\n",
    ]


def random_corpus(count=400, seed=20240229):
    """Random strings with a fixed seed: half from characters that stress the pattern, half arbitrary
    assigned code points (Python's Unicode 14 database; no surrogates or unassigned ones)."""
    rng = random.Random(seed)
    tricky = list(" \t\n\r'sStTlLdDmMrReEvV0123456789.,!?-_()[]{}<>|/\\\"`~") + [
        "\u00a0", "\u3000", "\u2028", "\u0301", "\u0308", "\u00e9", "\u4f60", "\ud55c", "\u1100", "\u1161",
        "\U0001f600", "\u200d", "\ufe0f", "\u0627", "\u0928", "\u094d", "\u017f", "\u0130", "\u212a", "ß",
        "<|im_end|>", "<|image_pad|>", "<|endoftext|>",
    ]

    def arbitrary():
        while True:
            cp = rng.choice([rng.randint(0x20, 0x7FF), rng.randint(0x800, 0xFFFF), rng.randint(0x10000, 0x2FFFF)])
            if 0xD800 <= cp <= 0xDFFF:
                continue
            ch = chr(cp)
            if unicodedata.category(ch) != "Cn":
                return ch

    out = []
    for i in range(count):
        n = rng.randint(1, 40)
        if i % 2 == 0:
            out.append("".join(rng.choice(tricky) for _ in range(n)))
        else:
            out.append("".join(arbitrary() if rng.random() < 0.7 else rng.choice(tricky) for _ in range(n)))
    return out


CORPUS = fixed_corpus() + random_corpus()


def run_evoq(args, stdin):
    proc = subprocess.run([EVOQ, "tokenize", *args], input=stdin.encode("utf-8") if isinstance(stdin, str) else stdin,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode("utf-8")


def evoq_encode(model, texts):
    out = run_evoq(["--model", model, "--jsonl"], "".join(json.dumps(t) + "\n" for t in texts))
    lines = out.split("\n")[:-1]
    assert len(lines) == len(texts)
    return [[int(x) for x in line.split()] for line in lines]


def evoq_decode(model, id_lists, skip_special=False):
    args = ["--model", model, "--jsonl", "--decode"] + (["--skip-special"] if skip_special else [])
    out = run_evoq(args, "".join(" ".join(map(str, ids)) + "\n" for ids in id_lists))
    lines = out.split("\n")[:-1]
    assert len(lines) == len(id_lists)
    return [json.loads(line) for line in lines]


def assert_same_ids(texts, ours, expected):
    bad = [(t, o, e) for t, o, e in zip(texts, ours, expected) if o != e]
    assert not bad, f"{len(bad)} of {len(texts)} differ; first: {bad[0][0]!r}: ours {bad[0][1]} expected {bad[0][2]}"


@pytest.fixture(scope="module")
def hf_qwen2():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(QWEN2, local_files_only=True)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    return tok


@pytest.fixture(scope="module")
def rust_qwen3():
    import tokenizers

    return tokenizers.Tokenizer.from_file(os.path.join(QWEN3, "tokenizer.json"))


def test_encode_matches_transformers(hf_qwen2):
    expected = [hf_qwen2.encode(t, add_special_tokens=False) for t in CORPUS]
    assert_same_ids(CORPUS, evoq_encode(QWEN2, CORPUS), expected)
    # Facts from the reference notes.
    assert hf_qwen2.encode("  Hello", add_special_tokens=False) == [220, 21927]


def test_tokenizer_json_matches_tokenizers_library(rust_qwen3):
    expected = [rust_qwen3.encode(t, add_special_tokens=False).ids for t in CORPUS]
    assert_same_ids(CORPUS, evoq_encode(QWEN3, CORPUS), expected)


def test_tokenizer_json_agrees_with_vocab_files():
    from_json, from_vocab = evoq_encode(QWEN3, CORPUS), evoq_encode(QWEN2, CORPUS)
    # Only Qwen3's extra added tokens (<think>, ...: ids >= 151657) may differ.
    comparable = [i for i, ids in enumerate(from_json) if all(x < 151657 for x in ids)]
    assert len(comparable) > len(CORPUS) * 0.9
    assert_same_ids([CORPUS[i] for i in comparable], [from_json[i] for i in comparable],
                    [from_vocab[i] for i in comparable])


def test_decode_of_encode_is_nfc():
    ids = evoq_encode(QWEN2, CORPUS)
    decoded = evoq_decode(QWEN2, ids)
    bad = [(t, d) for t, d in zip(CORPUS, decoded) if d != unicodedata.normalize("NFC", t)]
    assert not bad, f"{len(bad)} differ; first: {bad[0][0]!r} -> {bad[0][1]!r}"


def test_decode_matches_transformers_on_random_ids(hf_qwen2):
    rng = random.Random(7)
    id_lists = []
    for _ in range(200):
        n = rng.randint(1, 12)
        # Mostly low ids (single bytes, often splitting UTF-8 characters), some anywhere, some special.
        id_lists.append([rng.choice([rng.randint(0, 255), rng.randint(0, 151642), rng.randint(151643, 151656)])
                         for _ in range(n)])
    for skip in (False, True):
        expected = [hf_qwen2.decode(ids, skip_special_tokens=skip) for ids in id_lists]
        ours = evoq_decode(QWEN2, id_lists, skip_special=skip)
        bad = [(i, o, e) for i, o, e in zip(id_lists, ours, expected) if o != e]
        assert not bad, f"skip_special={skip}: {len(bad)} differ; first {bad[0]}"


def test_plain_stdin_modes():
    assert run_evoq(["--model", QWEN2], "  Hello") == "220 21927\n"
    assert run_evoq(["--model", QWEN2], "") == "\n"
    assert run_evoq(["--model", QWEN2, "--decode"], "151644 220 21927\n151645") == "<|im_start|>  Hello<|im_end|>"
    assert run_evoq(["--model", QWEN2, "--decode", "--skip-special"], "151644 220 21927 151645") == "  Hello"


def evoq_error(args, stdin=""):
    proc = subprocess.run([EVOQ, "tokenize", *args], input=stdin.encode(), capture_output=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_gives_one_clear_line():
    assert "/no/such/model" in evoq_error(["--model", "/no/such/model"])
    with tempfile.TemporaryDirectory() as d:
        assert "neither tokenizer.json nor vocab.json" in evoq_error(["--model", d])
        with open(os.path.join(d, "vocab.json"), "w") as f:
            f.write('{"a": 0, "b"')
        assert "vocab.json" in evoq_error(["--model", d])
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            f.write('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]}}')
        assert "tokenizer.json" in evoq_error(["--model", d])
    assert "'abc' is not a token id" in evoq_error(["--model", QWEN2, "--decode"], "1 abc")
    assert "--model" in evoq_error([])


@pytest.fixture(scope="module")
def processor(hf_qwen2):
    from transformers import Qwen2VLProcessor, processing_utils
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil.from_pretrained(QWEN2, local_files_only=True)
    # No torchvision here, so no video processor; the class check would insist on one.
    processing_utils.ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=hf_qwen2, video_processor=None,
                            chat_template=INSTRUCT_CHAT_TEMPLATE)


@pytest.mark.parametrize("sizes,text", [
    ([(83, 61)], C_SCORE),
    ([(333, 500), (448, 448)], C_COMPARE),
    ([(29, 900)], C_SCORE + " " + REASONING),
    ([], "Describe nothing.\n  Twice  "),
    ([(64, 64), (100, 28), (57, 203)], " leading space, 三 images, <|im_end|> inside"),
])
def test_chat_prompt_matches_qwen2vl_processor(processor, sizes, text):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                           tokenize=False)
    out = processor(text=[prompt], images=images or None, return_tensors="np")
    expected = out["input_ids"][0].tolist()
    counts = [int(np.prod(g)) // 4 for g in out["image_grid_thw"]] if images else []
    args = ["--model", QWEN2, "--chat"] + (["--image-tokens", *map(str, counts)] if counts else [])
    ours = [int(x) for x in run_evoq(args, text).split()]
    assert ours == expected
