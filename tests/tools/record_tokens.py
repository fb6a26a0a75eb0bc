"""Record llama.cpp's tokenization of a fixed corpus into tests/data/tokenizer_cases.json.

Run once with the peer (llama-cpp-python), never from the test suite:

    /work/peer/venv/bin/python tests/tools/record_tokens.py

For both real models it stores, per corpus string, the ids llama.cpp gives for
(add_special, parse_special) in {(True, False), (True, True), (False, False)}
and what llama_detokenize gives back for the parse_special ids, with special
tokens rendered and hidden. It also stores the vocabulary facts the tokenizer
must reproduce (n_vocab, bos/eos, add_bos/add_eos, the end-of-generation ids).
"""
from __future__ import annotations

import ctypes
import json
import random
import sys
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "tokenizer_cases.json"
MODELS = {
    "smollm2-135m": Path.home() / ".cache/llamalite/models/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": Path.home() / ".cache/llamalite/models/gemma-3-270m-q4_k_m.gguf",
}

PARAGRAPH = (
    "The history of computing is a story of abstraction. Early machines were "
    "programmed by rewiring panels; later, stored programs let the same hardware "
    "run many tasks. Compilers turned readable code into machine instructions, "
    "and operating systems hid the details of disks, memory and devices. Today a "
    "laptop runs billions of instructions per second, yet most people never think "
    "about registers or caches. They write a sentence, press Enter, and expect an "
    "answer. Language models continue this tradition: they hide statistics, "
    "linear algebra and vast training corpora behind a simple text box. Whether "
    "that is progress depends on who you ask, and on what they're trying to do."
)

CORPUS: list[str] = [
    "",
    "Hello world",
    " Hello world",
    "Hello world ",
    "   leading and trailing   ",
    "multiple     spaces   between words",
    "line one\nline two\n\nline four\n\n\n",
    "\ttab\tseparated\t\tvalues\n",
    "\r\nWindows line endings\r\n",
    "a \t b \n c \r\n d  \n\n  e",
    "   \n\t  ",
    " ",
    "\n",
    "a",
    "1234567890",
    "3.14159265358979 and 2,718,281,828 and 1e-10",
    "The year 2024 had 366 days; 100000000000000000000 is big.",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"name": "llamalite", "version": [0, 1, 0], "ok": true, "pi": 3.14}',
    "https://example.com/path/to/page?query=hello%20world&lang=en#section-2",
    "Contact: jane.doe+test@example.org or @handle #hashtag",
    "Café naïve résumé — façade, São Paulo, Zürich, Ångström, Œuvre, jalapeño",
    "Straße Größe Übermaß äöü ÄÖÜ",
    "你好，世界！今天天气很好。我们去公园散步吧。",
    "こんにちは世界、カタカナとひらがな。東京",
    "안녕하세요 세계, 반갑습니다",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "नमस्ते दुनिया। हिन्दी भाषा बहुत सुंदर है।",
    "Γειά σου Κόσμε, שלום עולם, สวัสดีชาวโลก",
    "I love 🍕 and 🎉! 😀😃😄",
    "👋🏽 👍🏿 🙋🏻\u200d♀️ waving",
    "👨\u200d👩\u200d👧\u200d👦 family, 🏳️\u200d🌈 flag, 🧑🏾\u200d💻 coder",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<bos><eos><pad><unk> <mask>",
    "<|endoftext|>",
    "<|im_sta partial <|im_end| and <start_of_tur",
    "don't<|im_end|>won't",
    "<unused0> <start_of_image> [multimodal] <end_of_image>",
    "I'm sure you'll see they've done it, he'd said. It's John's 'quote'.",
    "DON'T YOU'RE I'LL WE'D SHE'S",
    "Hello!!! What??? Yes... (maybe) [or] {not}; a:b, c/d \\ e | f ~ g ^ h",
    "∑ x² ≤ ∞, α+β=γ, 5 × 3 ÷ 2 ≈ 7.5 °C ± 0.1 €100 £50 ¥1000",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    '<html><body><div class="x">Hi</div><br/></body></html>',
    "# Title\n\n- item 1\n- item 2\n\n```python\nprint('x')\n```\n",
    "ＡＢＣ１２３ fullwidth",
    "e\u0301 a\u0308 n\u0303 decomposed",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom",
    "non\u00a0breaking\u2009thin\u3000ideographic\u2028sep",
    "▁ literal lower one eighth block ▁▁",
    "𓀀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🂡 \U0001fae8",
    "\x00 control \x07 chars \x1b[31mred\x1b[0m",
    "٣٤٥ ५६७ ①②③ ½ ¾ 12½",
    "Mixed: English, français, Deutsch, русский, 中文, العربية, हिन्दी, 日本語.",
    "    indented with four spaces\n        and eight\n",
    "trailing newline\n",
    PARAGRAPH,
]

FLAG_SETS = [(True, False), (True, True), (False, False)]

# Building blocks of the seeded random strings: scripts, whitespace of every kind,
# digits, contractions, pieces of special tokens, emoji with modifiers and joiners.
ATOMS = [
    "the", " quick", "Brown", " fox", "'s", "'T", "'re", "'LL", "'d", "don't", "I'm",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\v", "\f", "\x85", "\xa0", "\u2003", "\u3000",
    "0", "7", "42", "123", "2024", "3.14", "1,000,000", "٣", "५", "½", "²", "①",
    ".", ",", "!", "?", "...", "(", ")", "[", "]", "{", "}", "<", ">", "|", "/", "\\", "-", "_",
    "=", "+", "*", "&", "#", "@", "$", "%", "^", "~", "`", '"', "'", ":", ";",
    "é", "ñ", "ü", "ß", "Ø", "ç", "e\u0301", "a\u0308", "\u0301",
    "日本", "中文", "漢字", "の", "カタカナ", "한국어", "ㄱ", "Привет", "мир", "Ё",
    "مرحبا", "سلام", "नमस्ते", "क्ष", "्", "ि", "ไทย", "ελληνικά", "Ω", "שלום",
    "😀", "👍🏽", "👩\u200d💻", "🏳️\u200d🌈", "❤️", "\ufe0f", "\u200d", "\u200b", "🇫🇷",
    "𝔘", "𓀀", "🂡", "\U0001fae8", "\ue000", "\u0378", "\U000e0001", "\x00", "\x1b", "\x7f",
    "▁", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>",
    "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "</s>", "<div>", "</div>", "[multimodal]",
    "<unused12>", "<0x41>", "<|im_", "start|>", "http://", "www.", ".com", "def", "():", "    ",
]


def random_corpus(n: int, seed: int = 20261122) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def long_text() -> str:
    """About 30 KB of varied text for one long exact comparison (and speed figures)."""
    rng = random.Random(7)
    parts = []
    for i in range(60):
        parts.append(PARAGRAPH)
        parts.append(CORPUS[1 + i % (len(CORPUS) - 1)])
        parts.append(" ".join(rng.choice(ATOMS[:60]) for _ in range(40)))
    return "\n\n".join(parts)


def detokenize(vocab, ids: list[int], unparse_special: bool) -> bytes:
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 1024
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, unparse_special)
        if n >= 0:
            return buf.raw[:n]
        size = -n + 16


def record_model(name: str, path: Path, extended: bool = True) -> dict:
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    info = {
        "n_vocab": n_vocab,
        "bos_id": llama_cpp.llama_vocab_bos(vocab),
        "eos_id": llama_cpp.llama_vocab_eos(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "eog_ids": eog,
    }
    cases = []
    for text in CORPUS:
        raw = text.encode("utf-8")
        case: dict = {"text": text, "ids": {}}
        for add_special, parse_special in FLAG_SETS:
            ids = llm.tokenize(raw, add_bos=add_special, special=parse_special)
            case["ids"][f"{int(add_special)}{int(parse_special)}"] = ids
        ids = case["ids"]["11"]
        # bytes may be invalid UTF-8 in theory: store them as latin-1 code points
        case["detok_special"] = detokenize(vocab, ids, True).decode("latin-1")
        case["detok_plain"] = detokenize(vocab, ids, False).decode("latin-1")
        cases.append(case)
    if not extended:
        return {"path": path.name, "vocab": info, "cases": cases}
    random_cases = []
    for text in random_corpus(300):
        raw = text.encode("utf-8")
        random_cases.append({"text": text, "ids": {
            "10": llm.tokenize(raw, add_bos=True, special=False),
            "11": llm.tokenize(raw, add_bos=True, special=True)}})
    text = long_text()
    long_case = {"text": text, "ids": {"10": llm.tokenize(text.encode("utf-8"), add_bos=True,
                                                          special=False)}}
    return {"path": path.name, "vocab": info, "cases": cases, "random_cases": random_cases,
            "long_case": long_case}


def main() -> int:
    data = {
        "recorded_with": f"llama-cpp-python {llama_cpp.__version__}",
        "note": "ids from llama_tokenize; keys of 'ids' are add_special,parse_special as 0/1; "
                "detok_* are llama_detokenize bytes (remove_special=false) stored as latin-1 text",
        "models": {name: record_model(name, path) for name, path in MODELS.items()},
    }
    OUT.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(CORPUS)} strings x {len(MODELS)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
