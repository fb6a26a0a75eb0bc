"""`llamalite run` chat logic (conversation, /reset, /exit, -p, --raw) on the fake model."""
from __future__ import annotations

import pytest
from fakes import fake_llm
from typer.testing import CliRunner

from llamalite.cli import run as run_module
from llamalite.cli.main import app

CHAT = ("<user>Hi\n<assistant>Hello!<eos>\n<user>More\n<assistant>Sure thing.<eos>\n"
        "<user>Bye\n<assistant>See you.")


@pytest.fixture
def fake_cli(monkeypatch):
    def use(script: str):
        import llamalite.llm
        monkeypatch.setattr(run_module, "resolve_model", lambda model, progress=None: model)
        monkeypatch.setattr(llamalite.llm, "LLM",
                            lambda path, n_ctx, n_threads, seed: fake_llm(script, n_ctx=n_ctx))
        return CliRunner()
    return use


def invoke(runner, *args, input=None):
    return runner.invoke(app, ["run", "fake", "--temp", "0", *args], input=input)


def test_interactive_keeps_the_conversation_and_resets(fake_cli):
    r = invoke(fake_cli(CHAT), input="Hi\nMore\n/reset\nHi\n/exit\nMore\n")
    assert r.exit_code == 0, r.output
    assert r.stdout == "Hello!\nSure thing.\nHello!\n"


def test_end_of_input_leaves_cleanly(fake_cli):
    r = invoke(fake_cli(CHAT), input="Hi\n")
    assert (r.exit_code, r.stdout) == (0, "Hello!\n")


def test_without_the_history_the_fake_goes_wrong(fake_cli):
    # Sanity check of the fake itself: "More" as a first message is not in its script.
    r = invoke(fake_cli(CHAT), input="More\n")
    assert r.stdout != "Sure thing.\n"


def test_prompt_once_prints_only_the_reply(fake_cli):
    r = invoke(fake_cli(CHAT), "-p", "Hi")
    assert (r.exit_code, r.stdout) == (0, "Hello!\n")


def test_raw_completion_and_max_tokens(fake_cli):
    r = invoke(fake_cli("Once upon a time there was a cat."), "--raw", "-p", "Once upon")
    assert r.stdout == " a time there was a cat.\n"
    r = invoke(fake_cli("Once upon a time there was a cat."), "--raw", "-n", "3", "-p", "Once upon")
    assert r.stdout == " a \n"


def test_verbose_timings_go_to_stderr(fake_cli):
    r = invoke(fake_cli(CHAT), "--verbose", "-p", "Hi")
    assert r.stdout == "Hello!\n"
    assert "tok/s" in r.stderr and "first token" in r.stderr


def test_bad_options_and_overlong_prompt_fail_with_one_line(fake_cli):
    r = invoke(fake_cli(CHAT), "--top-p", "0", "-p", "Hi")
    assert r.exit_code == 1 and "top_p" in r.stderr and r.stdout == ""
    r = invoke(fake_cli(CHAT), "-c", "8", "-p", "Hi there, this is too long")
    assert r.exit_code == 1 and "n_ctx=8" in r.stderr and r.stdout == ""
