"""`llamalite run` on the real models, as a user runs it (a subprocess)."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time

from conftest import run_cli


def test_prompt_once_answers_on_stdout_only(smollm2_path):
    r = run_cli("run", "smollm2-135m", "-p", "Name the capital of France.", "--temp", "0",
                "-n", "48", "--threads", "2", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "The capital of France is Paris.\n"
    assert "llamalite" not in r.stdout and "tok/s" not in r.stdout


def test_verbose_speeds_go_to_stderr(gemma3_path):
    r = run_cli("run", "gemma3-270m", "--raw", "-p", "The capital of France is", "--temp", "0",
                "-n", "8", "--verbose", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "tok/s" not in r.stdout
    assert "tok/s" in r.stderr and "load" in r.stderr


def test_interactive_with_piped_stdin_reset_and_exit(smollm2_path):
    questions = "Name the capital of France.\nWhat is 2 + 2?\n"
    kept = run_cli("run", "smollm2-135m", "--temp", "0", "-n", "40", input=questions, timeout=300)
    reset = run_cli("run", "smollm2-135m", "--temp", "0", "-n", "40",
                    input="Name the capital of France.\n/reset\nWhat is 2 + 2?\n/exit\n"
                          "This line is never read.\n", timeout=300)
    alone = run_cli("run", "smollm2-135m", "--temp", "0", "-n", "40", "-p", "What is 2 + 2?",
                    timeout=300)
    for r in (kept, reset, alone):
        assert r.returncode == 0, r.stderr
    first = "The capital of France is Paris.\n"
    assert reset.stdout.startswith(first) and kept.stdout.startswith(first)
    # After /reset the second answer is the one a fresh chat gives. (Whether the kept
    # history changes the answer is up to the model: greedy SmolLM2 says "The answer is
    # 4." either way. That the history is sent is checked on the fake model in
    # tests/test_cli_run_fake.py.)
    assert reset.stdout[len(first):] == alone.stdout
    assert kept.stdout[len(first):].strip()
    assert "[conversation reset]" in reset.stderr
    assert "never read" not in reset.stdout


def test_ctrl_c_stops_the_reply_and_keeps_the_program(smollm2_path):
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llamalite.cli.main", "run", "smollm2-135m", "-n", "2000",
             "--ctx-size", "4096"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
            # A terminal's default: a shell's background job starts with SIGINT ignored,
            # which the child would inherit (and Ctrl-C would never reach it).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            proc.stdin.write(b"Write a very long story about a dragon.\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 120
            got = b""
            while len(got) < 20 and time.monotonic() < deadline:  # the reply is streaming
                ready, _, _ = select.select([proc.stdout], [], [], 1.0)
                if ready:
                    got += os.read(proc.stdout.fileno(), 4096)
            assert got, "no reply streamed"
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
            proc.stdin.write(b"/exit\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err.decode()
        assert b"[reply stopped]" in err
