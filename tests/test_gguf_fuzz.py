"""Seeded fuzzing of both real models' headers: open_gguf succeeds or raises GGUFError.

Each case mutates the header region (everything before the tensor data) of a real
model with bit flips, byte overwrites or a truncation, and opens the result. The
mutated file is never a full copy: the header is written once into a scratch file
that is extended sparsely (truncate) to the original size, each case patches a
few bytes in place, and the patch is undone afterwards.

Mutations are aimed where a parser can go wrong: the fixed header, the small
key-value pairs at the start, the type/length fields of each metadata value, and
the tensor infos; a quarter land anywhere in the header. Set LLAMALITE_FUZZ_SEED
and LLAMALITE_FUZZ_CASES to reproduce or extend a run.
"""
from __future__ import annotations

import os
import random
import struct

import pytest

import llamalite
from llamalite.gguf import GGUFError
from gguf_builder import (ARR, BOOL, F32, F64, I8, I16, I32, I64, STR, U8, U16, U32, U64,
                          arch_kv, gguf_bytes, kv, tensor_info)

SEED = int(os.environ.get("LLAMALITE_FUZZ_SEED", "20261122"))
CASES_PER_MODEL = int(os.environ.get("LLAMALITE_FUZZ_CASES", "1000"))
SPECIAL_BYTES = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01", b"\x1f", b"\x20")


def _hot_spots(header: bytes, g) -> list[tuple[int, int]]:
    """(start, end) byte ranges worth mutating: fixed header, keys + value headers, tensor infos."""
    spots = [(0, 24), (24, min(len(header), 2048))]
    for key in g.metadata:
        at = header.find(struct.pack("<Q", len(key)) + key.encode())
        if at >= 0:  # the key's length, its bytes, the value type and an array's type/count
            spots.append((at, min(len(header), at + 8 + len(key) + 16)))
    first = next(iter(g.tensors))
    ti_start = header.rfind(struct.pack("<Q", len(first)) + first.encode())
    spots.append((ti_start, g.data_offset))
    return spots


def _mutation(rng: random.Random, header: bytes, spots, file_size: int):
    """One case: (description, {position: new bytes}, length to truncate the file to)."""
    if rng.random() < 0.75:
        lo, hi = rng.choice(spots)
    else:
        lo, hi = 0, len(header)
    kind = rng.choice(("flip", "flip", "overwrite", "overwrite", "truncate"))
    if kind == "truncate":
        if rng.random() < 0.8:
            cut = rng.randrange(lo, hi)
        else:  # inside the tensor data: some tensor now runs past the end
            cut = rng.randrange(len(header), file_size)
        return f"truncate at {cut}", {}, cut
    patch = {}
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        pos = rng.randrange(lo, hi)
        if kind == "flip":
            old = patch.get(pos, header[pos:pos + 1])[0]
            patch[pos] = bytes([old ^ (1 << rng.randrange(8))])
        else:
            n = min(rng.choice((1, 1, 2, 4, 8)), len(header) - pos)
            fill = rng.choice(SPECIAL_BYTES + (None,))
            for k in range(n):
                patch[pos + k] = fill if fill is not None else bytes([rng.randrange(256)])
    return f"{kind} {sorted(patch.items())[:8]}", patch, file_size


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_fuzzed_headers_succeed_or_raise_gguf_error(model, tmp_path):
    path = llamalite.pull(model)
    with llamalite.open_gguf(path) as g:
        file_size = g.file_size
        with open(path, "rb") as f:
            header = f.read(g.data_offset)
        spots = _hot_spots(header, g)
    rng = random.Random(f"{SEED}-{model}")
    scratch = tmp_path / "fuzz.gguf"
    outcomes = {"ok": 0, "error": 0}
    with open(scratch, "wb") as f:
        f.write(header)
        f.truncate(file_size)          # sparse: no copy of the tensor data
    fd = os.open(scratch, os.O_RDWR)
    try:
        for case in range(CASES_PER_MODEL):
            desc, patch, length = _mutation(rng, header, spots, file_size)
            for pos, b in patch.items():
                os.pwrite(fd, b, pos)
            if length != file_size:
                os.ftruncate(fd, length)
            try:
                with llamalite.open_gguf(scratch) as h:
                    for t in h.tensors.values():   # what success promises
                        assert t.offset + t.nbytes <= h.file_size == length
                outcomes["ok"] += 1
            except GGUFError:
                outcomes["error"] += 1
            except Exception as e:  # anything else is a loader bug
                pytest.fail(f"{model} case {case} (seed {SEED}): {desc}: "
                            f"{type(e).__name__}: {e}")
            for pos in patch:       # undo the case
                os.pwrite(fd, header[pos:pos + 1], pos)
            if length != file_size:
                if length < len(header):
                    os.pwrite(fd, header[length:], length)
                os.ftruncate(fd, file_size)
    finally:
        os.close(fd)
    print(f"{model}: {outcomes}")  # shown with pytest -s
    # The mutations must exercise both outcomes, or the fuzzer is not testing anything.
    assert outcomes["ok"] > 0 and outcomes["error"] > CASES_PER_MODEL // 4, outcomes


def _every_type_file() -> bytes:
    """A small valid file using every value type, nested arrays, a vocabulary and 3 tensors."""
    kvs = [arch_kv("llama"), kv("general.alignment", U32, 64)]
    kvs += [kv(f"x.{t}", t, v) for t, v in ((U8, 1), (I8, -1), (U16, 2), (I16, -2), (U32, 3),
                                            (I32, -3), (F32, 0.5), (BOOL, 1), (U64, 4),
                                            (I64, -4), (F64, 0.25), (STR, "hi"))]
    kvs += [kv("x.nested", ARR, (ARR, [(U8, [1, 2]), (STR, ["a", "bc"]), (ARR, [(I32, [7])])])),
            kv("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "a", "b", "ab"])),
            kv("tokenizer.ggml.scores", ARR, (F32, [0.0, -1.0, -2.0, -3.0])),
            kv("tokenizer.ggml.token_type", ARR, (I32, [3, 1, 1, 1])),
            kv("tokenizer.ggml.merges", ARR, (STR, ["a b"])),
            kv("llama.vocab_size", U32, 4)]
    tensors = [tensor_info("a", [8], 0, 0), tensor_info("q", [256, 2], 12, 64),
               tensor_info("h", [4, 2, 2, 2], 1, 384)]
    return gguf_bytes(kvs, tensors, b"\1" * (384 + 64), alignment=64)


def test_fuzzed_synthetic_file_with_every_value_type():
    """Mutations anywhere in a small file that uses every value type (buffer input)."""
    base = _every_type_file()
    with llamalite.open_gguf(base) as g:
        assert len(g.tensors) == 3 and g.alignment == 64
    rng = random.Random(f"{SEED}-synthetic")
    outcomes = {"ok": 0, "error": 0}
    for case in range(CASES_PER_MODEL):
        data = bytearray(base)
        kind = rng.choice(("flip", "overwrite", "truncate"))
        if kind == "truncate":
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.choice((1, 2, 4))):
                pos = rng.randrange(len(data))
                if kind == "flip":
                    data[pos] ^= 1 << rng.randrange(8)
                else:
                    data[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        try:
            llamalite.open_gguf(bytes(data)).close()
            outcomes["ok"] += 1
        except GGUFError:
            outcomes["error"] += 1
        except Exception as e:
            pytest.fail(f"synthetic case {case} (seed {SEED}, {kind}): {type(e).__name__}: {e}")
    print(f"synthetic: {outcomes}")  # shown with pytest -s
    assert outcomes["ok"] > 0 and outcomes["error"] > CASES_PER_MODEL // 4, outcomes
