"""The HTTP server against hostile clients, live on loopback over the fakes: CPU work off the
event loop (waited on with events, not clocks), deep JSON, slowloris heads and short bodies
(raw sockets, short configured timeouts, waiting for the server to close), every request
field honoured or refused, Host / Content-Type / CORS checks, refusals in /metrics, and
JSON answers to requests h11 cannot parse."""
from __future__ import annotations

import json
import logging
import random
import select
import socket
import threading
import time

import httpx
import pytest

from fakes import FakeChatTemplate, FakeTokenizer, HashModel, fake_backend
from server_fakes import LiveServer
from test_server import MSGS, NAME, assert_error, engine_of, serve
from llamalite.server.app import create_app
from llamalite.server.schemas import MAX_JSON_DEPTH, json_depth
from llamalite.server.settings import Settings


@pytest.fixture(scope="module")
def srv():
    s = serve(Settings(model=NAME + ".gguf", ctx_size=2048, max_prompt_chars=5000,
                       allowed_hosts=("llm.example",), cors_origins=("http://app.example",)))
    yield s
    s.stop()


def metric(srv, name: str) -> float:
    for line in httpx.get(srv.url + "/metrics").text.splitlines():
        if line.startswith(f"llamalite_{name} "):
            return float(line.split()[-1])
    return 0.0


# --- CPU work off the event loop ----------------------------------------------------------

class Gate:
    """Makes one fake method block until released, and says when it has been entered."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.active = self.max_active = 0

    def wrap(self, fn):
        def blocked(*args, **kwargs):
            with self.lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            self.entered.set()
            try:
                assert self.release.wait(30), "never released"
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.active -= 1
        return blocked


def gated_server(where: str, gate: Gate, **settings) -> LiveServer:
    tok, template = FakeTokenizer(), FakeChatTemplate()
    if where == "tokenize":
        tok.tokenize = gate.wrap(tok.tokenize)
    elif where == "detokenize":
        tok.detokenize = gate.wrap(tok.detokenize)
    else:
        template.render = gate.wrap(template.render)
    def factory(s: Settings):
        return fake_backend(s, name=NAME, tokenizer=tok, template=template)
    app = create_app(Settings(model="m.gguf", ctx_size=512, **settings), factory)
    return LiveServer(app).start()


@pytest.mark.parametrize("where, path, body", [
    ("tokenize", "/tokenize", {"content": "hello"}),
    ("tokenize", "/v1/completions", {"prompt": "hello", "max_tokens": 2}),
    ("render", "/v1/chat/completions", {"messages": MSGS, "max_tokens": 2}),
    ("detokenize", "/detokenize", {"tokens": [104, 105]}),
])
def test_health_answers_while_a_request_is_tokenized(where, path, body):
    """The tokenizer (or template) blocks until /health has answered: on the event loop it
    would block /health with it, and /health would time out."""
    gate = Gate()
    s = gated_server(where, gate)
    try:
        result: list[httpx.Response] = []
        t = threading.Thread(target=lambda: result.append(
            httpx.post(s.url + path, json=body, timeout=60)))
        t.start()
        assert gate.entered.wait(30)
        try:
            health = httpx.get(s.url + "/health", timeout=10)
        finally:
            gate.release.set()
        assert health.status_code == 200
        t.join(60)
        assert result and result[0].status_code == 200, result
    finally:
        gate.release.set()
        s.stop()


def test_cpu_workers_are_bounded():
    gate = Gate()
    s = gated_server("tokenize", gate, cpu_workers=1)
    try:
        pool = s.server.config.app.state.llamalite.workers._pool
        threads = [threading.Thread(target=lambda: httpx.post(
            s.url + "/tokenize", json={"content": "x"}, timeout=60)) for _ in range(3)]
        for t in threads:
            t.start()
        assert gate.entered.wait(30)
        end = time.time() + 30                  # until the other two wait in line
        while pool._work_queue.qsize() < 2 and time.time() < end:
            time.sleep(0.01)
        assert pool._work_queue.qsize() == 2 and gate.active == 1
        assert httpx.get(s.url + "/health", timeout=10).status_code == 200
        gate.release.set()
        for t in threads:
            t.join(60)
        assert gate.max_active == 1
    finally:
        gate.release.set()
        s.stop()


# --- deep JSON --------------------------------------------------------------------------

def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


def _random_json(rng: random.Random, depth: int):
    kind = rng.random()
    if depth <= 0 or kind < 0.3:
        return rng.choice(["a[{b", "}]\\\"[", "", "plain", 1, 2.5, None, True, '"\\[', "]]]]"])
    if kind < 0.65:
        return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}[": _random_json(rng, depth - 1) for i in range(rng.randint(0, 3))}


def test_json_depth_matches_a_recursive_walk():
    rng = random.Random(5)
    for _ in range(300):
        value = {"x": _random_json(rng, rng.randint(0, 45))}
        assert json_depth(value) == _depth(value)
    assert json_depth(3) == 0 and json_depth([]) == 1 and json_depth({"a": [{}]}) == 3


@pytest.mark.parametrize("path, key", [("/v1/chat/completions", "messages"),
                                       ("/tokenize", "content"), ("/v1/completions", "prompt")])
def test_deeply_nested_json_is_400(srv, path, key):
    n = 100_000
    raw = ('{"%s": ' % key + "[" * n + "]" * n + "}").encode()
    err = assert_error(httpx.post(srv.url + path, content=raw,
                                  headers={"content-type": "application/json"}), 400, "deep")
    assert err["code"] == "invalid_json"
    objects = ('{"%s": ' % key + '{"a":' * n + "1" + "}" * n + "}").encode()
    assert_error(httpx.post(srv.url + path, content=objects,
                            headers={"content-type": "application/json"}), 400, "deep")


def test_nesting_just_over_the_limit_is_400(srv):
    n = MAX_JSON_DEPTH + 8                    # under the decoder's own recursion limit
    raw = ('{"messages": ' + "[" * (n - 1) + "]" * (n - 1) + "}").encode()
    assert_error(httpx.post(srv.url + "/v1/chat/completions", content=raw,
                            headers={"content-type": "application/json"}), 400, f"{n} deep")
    ok = ('{"messages": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}")
    err = assert_error(httpx.post(srv.url + "/v1/chat/completions", content=ok.encode(),
                                  headers={"content-type": "application/json"}), 400)
    assert "deep" not in err["message"] and err["param"] == "messages[0]"


def test_brackets_inside_strings_do_not_count(srv):
    text = "[" * 3000 + '\\"{' * 500
    r = httpx.post(srv.url + "/tokenize", json={"content": text})
    assert r.status_code == 200 and len(r.json()["tokens"]) == len(text.encode())


# --- timeouts (raw sockets, short timeouts, wait for the server to close) -------------------

class Tracebacks(logging.Handler):
    """Collects log records that carry an exception or are errors."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture
def quick():
    s = serve(Settings(model="m.gguf", ctx_size=512, header_timeout_s=0.5, body_timeout_s=0.5))
    handler = Tracebacks()
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "llamalite.server")]
    for lg in loggers:
        lg.addHandler(handler)
    yield s, handler
    for lg in loggers:
        lg.removeHandler(handler)
    s.stop()


def connect(srv: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (each recv bounded by the socket's
    30 s timeout, a failure, never a pass)."""
    data = b""
    for _ in range(10_000):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the server kept sending")


def json_answer(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert headers["content-type"].startswith("application/json"), head
    return status, json.loads(body), head


def test_silent_connection_gets_408_and_is_closed(quick):
    s, logs = quick
    with connect(s) as sock:
        status, body, _ = json_answer(read_until_closed(sock))
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert "header-timeout" in body["error"]["message"]
    assert not logs.records


def test_slowloris_head_is_cut_off(quick):
    s, logs = quick
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 100_000
    with connect(s) as sock:
        closed = False
        for byte in head:                       # one byte at a time until the server answers
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if select.select([sock], [], [], 0.01)[0]:
                closed = True
                break
        assert closed, "the server waited for the whole slow head"
        status, body, _ = json_answer(read_until_closed(sock))
    assert status == 408
    assert not logs.records
    assert httpx.get(s.url + "/health").status_code == 200


def test_body_shorter_than_content_length_is_408(quick):
    s, logs = quick
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"prompt": "a')
    with connect(s) as sock:
        sock.sendall(request)
        status, body, head = json_answer(read_until_closed(sock))
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert "body-timeout" in body["error"]["message"] and b"connection: close" in head.lower()
    assert not logs.records, [r.getMessage() for r in logs.records]
    assert httpx.get(s.url + "/health").status_code == 200


def test_client_leaving_mid_body_logs_no_traceback(quick):
    s, logs = quick
    before = metric(s, "http_requests_total")
    with connect(s) as sock:
        sock.sendall(b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    end = time.time() + 30                  # until the server has seen the request end
    while metric(s, 'http_responses_total{status="499"}') < 1 and time.time() < end:
        time.sleep(0.01)
    assert metric(s, 'http_responses_total{status="499"}') == 1
    assert metric(s, "http_requests_total") >= before + 1
    assert not logs.records, [r.getMessage() for r in logs.records]


# --- every field honoured or refused -------------------------------------------------------

@pytest.mark.parametrize("extra, param, words", [
    ({"functions": [{"name": "f"}]}, "functions", ["deprecated", "tools"]),
    ({"tools": "get_weather"}, "tools", ["must be a list"]),
    ({"tool_choice": "required"}, "tool_choice", ["needs tools"]),
    ({"response_format": {"type": "xml"}}, "response_format", ["type must be"]),
    ({"grammar": "root ::= x"}, "grammar", ["grammar"]),
    ({"json_schema": "{}"}, "json_schema", ["must be a JSON schema object"]),
    ({"json_schema": {"type": "wat"}}, "json_schema", ["cannot be used"]),
    ({"user": 5}, "user", ["'user' must be a string"]),
    ({"frobnicate": 1}, "frobnicate", ["unknown field"]),
    ({"suffix": "x"}, "suffix", ["unknown field"]),
    ({"stream_options": {"include_usage": True}}, "stream_options", ["stream"]),
    ({"stream": True, "stream_options": {"x": 1}}, "stream_options.x", ["unknown field"]),
    ({"max_tokens": 3, "max_completion_tokens": 4}, "max_tokens", ["differ"]),
    ({"stop": ["x" * 2000]}, "stop", ["longer than"]),
])
def test_bad_or_unknown_fields_are_400_naming_them(srv, extra, param, words):
    err = assert_error(httpx.post(srv.url + "/v1/chat/completions",
                                  json={"messages": MSGS, **extra}), 400, *words)
    assert err["param"] == param


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x", "tool_calls": []}]},
     "messages[0].tool_calls"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "name": 3, "content": "x"}]},
     "messages[0].name"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "x", "cache_control": {}}]}]}, "messages[0].content[0].cache_control"),
    ("/v1/completions", {"prompt": "x", "best_of": 2}, "best_of"),
    ("/v1/completions", {"prompt": "x", "tools": []}, "tools"),
    ("/tokenize", {"content": "x", "special": True}, "special"),
    ("/detokenize", {"tokens": [1], "skip": True}, "skip"),
])
def test_unknown_fields_everywhere(srv, path, body, param):
    assert assert_error(httpx.post(srv.url + path, json=body), 400)["param"] == param


def test_accepted_fields_work(srv):
    r = httpx.post(srv.url + "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "hi", "name": "bob"}], "user": "u-1",
        "max_tokens": 2, "max_completion_tokens": 2, "seed": 3, "stream": False})
    assert r.status_code == 200, r.text
    r = httpx.post(srv.url + "/v1/completions", json={"prompt": "x", "echo": False, "user": "u",
                                                      "max_tokens": 1})
    assert r.status_code == 200, r.text
    assert_error(httpx.post(srv.url + "/v1/chat/completions", json={
        "messages": MSGS, "echo": False}), 400, "unknown field 'echo'")


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"prompt": "x" * 5001}, "prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 3000}] * 2},
     "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}] * 200}, "messages"),
    ("/tokenize", {"content": "x" * 5001}, "content"),
    ("/v1/completions", {"prompt": [65] * 5001}, "prompt"),
])
def test_prompt_longer_than_the_character_limit(srv, path, body, param):
    err = assert_error(httpx.post(srv.url + path, json=body), 400, "5000", "--max-prompt-chars")
    assert err["param"] == param and err["code"] == "prompt_too_long"


# --- Host, Content-Type, CORS ------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x",
                                          "application/json; charset=latin-1"])
def test_post_bodies_must_be_json(srv, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    r = httpx.post(srv.url + "/v1/completions", content=b'{"prompt": "a", "max_tokens": 1}',
                   headers=headers)
    err = assert_error(r, 415, "application/json")
    assert err["param"] == "Content-Type"


def test_json_with_utf8_charset_is_accepted(srv):
    r = httpx.post(srv.url + "/v1/completions", content=b'{"prompt": "a", "max_tokens": 1}',
                   headers={"content-type": "Application/JSON; charset=UTF-8"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("host, ok", [
    ("evil.example", False), ("evil.example:{port}", False), ("127.0.0.1.evil.example", False),
    ("localhost", True), ("localhost:{port}", True), ("LOCALHOST.:{port}", True),
    ("127.0.0.1:{port}", True), ("[::1]:{port}", True), ("llm.example:{port}", True),
])
def test_host_header_is_checked(srv, host, ok):
    r = httpx.get(srv.url + "/health", headers={"host": host.format(port=srv.port)})
    if ok:
        assert r.status_code == 200, r.text
    else:
        assert assert_error(r, 400, "Host", "--allowed-hosts")["code"] == "invalid_host"


def test_any_host_with_star():
    s = serve(Settings(model="m.gguf", ctx_size=512, allowed_hosts=("*",)))
    try:
        assert httpx.get(s.url + "/health", headers={"host": "anything.example"}).status_code == 200
    finally:
        s.stop()


def test_cors_only_for_named_origins(srv):
    good, bad = "http://app.example", "http://evil.example"
    pre = {"access-control-request-method": "POST",
           "access-control-request-headers": "content-type, authorization"}
    r = httpx.options(srv.url + "/v1/chat/completions", headers={"origin": good, **pre})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == good
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"]
    assert_error(httpx.options(srv.url + "/v1/chat/completions", headers={"origin": bad, **pre}),
                 403, "--cors-origin")
    r = httpx.post(srv.url + "/tokenize", json={"content": "a"}, headers={"origin": good})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == good
    r = httpx.post(srv.url + "/tokenize", json={"content": "a"}, headers={"origin": bad})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_no_cors_without_cors_origin():
    s = serve(Settings(model="m.gguf", ctx_size=512))
    try:
        origin = {"origin": "http://app.example"}
        r = httpx.get(s.url + "/v1/models", headers=origin)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert_error(httpx.options(s.url + "/v1/models", headers={
            **origin, "access-control-request-method": "GET"}), 403)
    finally:
        s.stop()


# --- refusals in /metrics -------------------------------------------------------------------

def test_every_429_and_4xx_is_counted():
    s = serve(Settings(model="m.gguf", ctx_size=4096, n_parallel=1, max_queue=0),
              model=HashModel(delay=0.02))
    try:
        eng = engine_of(s)
        with httpx.stream("POST", s.url + "/v1/completions", timeout=30, json={
                "prompt": "busy", "max_tokens": 3000, "stream": True}) as r:
            end = time.time() + 10
            while eng.stats().running < 1 and time.time() < end:
                time.sleep(0.005)
            codes = [httpx.post(s.url + "/v1/completions",
                                json={"prompt": "x", "max_tokens": 1}).status_code
                     for _ in range(5)]
            assert codes == [429] * 5
            assert metric(s, "requests_rejected_total") == 5
            assert metric(s, 'http_responses_total{status="429"}') == 5
            r.close()
        httpx.post(s.url + "/v1/completions", content=b"{}", headers={"content-type": "text/plain"})
        httpx.get(s.url + "/nowhere")
        assert metric(s, 'http_responses_total{status="415"}') == 1
        assert metric(s, 'http_responses_total{status="404"}') == 1
        assert metric(s, "http_errors_total") == 7
    finally:
        s.stop()


def test_serve_cli_checks_the_new_options():
    from conftest import run_cli
    for flag, value in (("--header-timeout", "0"), ("--body-timeout", "-1"),
                        ("--max-prompt-chars", "0"), ("--cpu-workers", "0")):
        r = run_cli("serve", "/nonexistent/model.gguf", flag, value)
        assert r.returncode == 1 and flag in r.stderr, r.stderr


# --- requests h11 cannot parse ---------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x00b\r\n\r\n",
    b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: abc\r\n\r\n{}",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 20_000,     # no end: 431
], ids=["nul-in-header", "bad-content-length", "not-http", "head-too-large"])
def test_unparseable_requests_get_json_errors(quick, raw):
    s, logs = quick
    with connect(s) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass                                 # answered and closed before all was sent
        status, body, _ = json_answer(read_until_closed(sock))
    assert status in (400, 431)
    assert body["error"]["code"] == "invalid_http_request"
    assert body["error"]["message"].startswith("invalid HTTP request")
    assert metric(s, f'http_responses_total{{status="{status}"}}') == 1
    assert not logs.records
