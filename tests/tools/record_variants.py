"""Record llama.cpp's tokenization for vocabulary variants into tests/data/tokenizer_variants.json.

The two real models cover the `smollm` pre-tokenizer and SentencePiece without a space
prefix. To check the other pre-tokenizers and flags against llama.cpp itself, this tool
writes vocabulary-only copies of the real files with a few tokenizer keys changed
(e.g. `tokenizer.ggml.pre = "llama-bpe"`), has the peer tokenize the corpus of
record_tokens.py with each, and stores the changes beside the ids. The tests apply the
same changes to the real files' metadata. Run once (needs the peer):

    .venv/bin/python tests/tools/record_variants.py [--peer-python /work/peer/venv/bin/python]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf

from llamalite import open_gguf, pull

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "tokenizer_variants.json"

# variant name -> (base model, keys to set, keys to delete)
VARIANTS: dict[str, tuple[str, dict, list[str]]] = {
    "gpt2": ("smollm2-135m", {"tokenizer.ggml.pre": "gpt-2"}, []),
    "llama-bpe": ("smollm2-135m", {"tokenizer.ggml.pre": "llama-bpe"},
                  ["tokenizer.ggml.add_bos_token"]),   # llama3 adds BOS by default
    "qwen2": ("smollm2-135m", {"tokenizer.ggml.pre": "qwen2"}, []),
    "default": ("smollm2-135m", {"tokenizer.ggml.pre": "default"}, []),
    "starcoder": ("smollm2-135m", {"tokenizer.ggml.pre": "starcoder"}, []),
    "spm-space-prefix": ("gemma3-270m", {"tokenizer.ggml.add_space_prefix": True,
                                         "tokenizer.ggml.add_eos_token": True}, []),
}

PEER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import record_tokens
jobs = json.loads(sys.argv[2])
print(json.dumps({name: record_tokens.record_model(name, Path(path), extended=False)
                  for name, path in jobs.items()}, ensure_ascii=False))
"""


def write_variant(base: str, set_keys: dict, del_keys: list[str], out: Path) -> None:
    with open_gguf(pull(base)) as f:
        md, types = dict(f.metadata), dict(f.metadata_types)
    arch = md.pop("general.architecture")
    for key in del_keys:
        md.pop(key, None)
    w = gguf.GGUFWriter(str(out), arch)
    for key, value in md.items():
        if key in set_keys:
            continue
        t = types[key]
        vtype = gguf.GGUFValueType(t[0])
        sub = gguf.GGUFValueType(t[1]) if vtype == gguf.GGUFValueType.ARRAY else None
        if hasattr(value, "tolist"):
            value = value.tolist()
        w.add_key_value(key, value, vtype, sub)
    for key, value in set_keys.items():
        vtype = gguf.GGUFValueType.BOOL if isinstance(value, bool) else gguf.GGUFValueType.STRING
        w.add_key_value(key, value, vtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--peer-python", default="/work/peer/venv/bin/python")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = {}
        for name, (base, set_keys, del_keys) in VARIANTS.items():
            path = Path(tmp) / f"{name}.gguf"
            write_variant(base, set_keys, del_keys, path)
            jobs[name] = str(path)
        res = subprocess.run([a.peer_python, "-c", PEER, str(HERE), json.dumps(jobs)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stderr[-2000:], file=sys.stderr)
            return 1
        recorded = json.loads(res.stdout.strip().split("\n")[-1])
    data = {"note": "llama.cpp ids for vocabulary variants of the real models; see "
                    "tests/tools/record_variants.py",
            "variants": {name: {"base": base, "set": set_keys, "delete": del_keys,
                                **recorded[name]}
                         for name, (base, set_keys, del_keys) in VARIANTS.items()}}
    OUT.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n",
                   encoding="utf-8")
    print(f"wrote {OUT} ({len(VARIANTS)} variants)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
