"""Chat templates: turn a list of messages into the prompt text a model was trained on.

The file's `tokenizer.chat_template` (a Jinja template, as on the Hugging Face Hub) is
rendered in jinja2's `ImmutableSandboxedEnvironment` with these variables:
`messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools`,
`raise_exception(msg)`, `strftime_now(fmt)`, plus any extra keyword arguments.

>>> tmpl = ChatTemplate.from_metadata(metadata, "llama")          # doctest: +SKIP
>>> tmpl.render([{"role": "user", "content": "Hi"}])               # doctest: +SKIP
'<|im_start|>system\\nYou are a helpful AI assistant ...'

When the file has no template, a fallback is chosen by architecture and
`is_fallback` is True:

* `gemma`, `gemma2`, `gemma3`: Gemma turns, `<start_of_turn>user\\n...<end_of_turn>\\n`,
  the assistant role named `model`, a system message merged into the first user turn,
  contents trimmed -- exactly llama.cpp's built-in "gemma" format;
* anything else: ChatML, `<|im_start|>role\\n...<|im_end|>\\n` (llama.cpp's "chatml").

Neither fallback writes the BOS token: `Tokenizer.tokenize(prompt, add_special=True)`
adds it when the vocabulary asks for it.

Security: templates come from untrusted files. Access to Python internals
(`''.__class__`, `x.__globals__`, ...) raises TemplateError at once, and rendering is
bounded: `range()` sizes, the total number of loop iterations, string sizes built by
`*`, `%`, `**` and string methods, the output length and the wall-clock time.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .errors import TemplateError

__all__ = ["ChatTemplate", "TemplateLimits", "GEMMA_TEMPLATE", "CHATML_TEMPLATE"]

# Built-in fallbacks. Message contents may be strings or OpenAI-style part lists.
_CONTENT_MACRO = (
    "{%- macro text(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- elif content is iterable -%}"
    "{%- for part in content -%}{%- if part.type == 'text' -%}{{ part.text }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
)

GEMMA_TEMPLATE = _CONTENT_MACRO + (
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'system' -%}"
    "{%- set ns.system = ns.system + (text(message.content) | trim) -%}"
    "{%- else -%}"
    "{%- set role = 'model' if message.role == 'assistant' else message.role -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if ns.system and role != 'model' -%}{{ ns.system + '\n\n' }}{%- set ns.system = '' -%}{%- endif -%}"
    "{{ (text(message.content) | trim) + '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

CHATML_TEMPLATE = _CONTENT_MACRO + (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message.role + '\n' + text(message.content) + '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

_GEMMA_ARCHS = frozenset(["gemma", "gemma2", "gemma3", "gemma3n"])


class TemplateLimits:
    """Bounds on one rendering. Exceeding any raises TemplateError."""

    def __init__(self, *, max_range: int = 10_000, max_iterations: int = 1_000_000,
                 max_string: int = 4_000_000, max_allocated: int = 64_000_000,
                 max_output: int = 4_000_000, max_seconds: float = 5.0) -> None:
        self.max_range = max_range            # items in one range()
        self.max_iterations = max_iterations  # loop iterations in the whole rendering
        self.max_string = max_string          # characters in one string or list built
        self.max_allocated = max_allocated    # characters built by string operations, in total
        self.max_output = max_output          # characters of output
        self.max_seconds = max_seconds        # wall-clock time


_BIG_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(?:\d{5,}|\*)|%[-+ #0]*\d*\.(?:\d{5,}|\*)")
_BIG_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*(?:\d{5,}|\{)")


class _Guard:
    """Per-rendering budget: loop iterations, characters built, time."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.iterations = 0
        self.allocated = 0
        self.deadline = time.monotonic() + limits.max_seconds

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"chat template took longer than {self.limits.max_seconds} s "
                                "to render")

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Every `{% for %}` loop runs through here (see _bound_template)."""
        limit = self.limits.max_iterations
        for item in iterable:
            self.iterations += 1
            if self.iterations > limit:
                raise TemplateError(f"chat template ran more than {limit:,} loop iterations "
                                    "(runaway loop?)")
            if (self.iterations & 1023) == 0:
                self.check_time()
            yield item

    def build(self, n: int, what: str = "string") -> None:
        """Account for an operation about to build `n` characters (or items)."""
        if n > self.limits.max_string:
            raise TemplateError(f"chat template builds a {what} of {n:,} characters "
                                f"(limit {self.limits.max_string:,})")
        self.allocated += n
        if self.allocated > self.limits.max_allocated:
            raise TemplateError(f"chat template built more than {self.limits.max_allocated:,} "
                                "characters in total")

    def concat(self, *parts: Any) -> str:
        """The `~` operator (see _bound_template)."""
        strs = [str(p) for p in parts]
        self.build(sum(map(len, strs)))
        return "".join(strs)

    def join(self, items: Iterable[Any], sep: str = "") -> str:
        strs: list[str] = []
        total = 0
        for item in self.iterate(items):
            text = str(item)
            total += len(text) + len(sep)
            if total > self.limits.max_string:
                self.build(total)
            strs.append(text)
        self.build(total)
        return sep.join(strs)


def _sequence_size(seq: Any) -> int:
    if isinstance(seq, str):
        return len(seq)
    return sum(len(x) if isinstance(x, (str, list, tuple)) else 1 for x in seq)


class _TemplateList(list):
    """A list the template built (a `[...]` literal). Unlike lists passed in (the
    messages, the tools), the template may change it: `append`, `extend`, `insert`,
    `pop`, `remove`, `clear`, `reverse`. What it adds counts against the rendering's
    limits (items in one list, items built in total, loop iterations)."""

    __slots__ = ("_guard",)

    def __init__(self, items: Iterable[Any], guard: _Guard) -> None:
        super().__init__(items)
        self._guard = guard

    def _grow(self, n: int) -> None:
        self._guard.check_time()
        if len(self) + n > self._guard.limits.max_string:
            raise TemplateError(f"chat template builds a list of more than "
                                f"{self._guard.limits.max_string:,} items")
        self._guard.build(n, "list")

    def append(self, item: Any) -> None:
        self._grow(1)
        super().append(item)

    def insert(self, index: Any, item: Any) -> None:
        self._grow(1)
        super().insert(index, item)

    def extend(self, items: Iterable[Any]) -> None:
        new = list(self._guard.iterate(items))
        self._grow(len(new))
        super().extend(new)


class _TemplateDict(dict):
    """A dict the template built (a `{...}` literal): the template may change it with
    `update`, `setdefault`, `pop`, `popitem`, `clear`; growth is accounted as for
    `_TemplateList`."""

    __slots__ = ("_guard",)

    def __init__(self, items: Mapping[Any, Any], guard: _Guard) -> None:
        super().__init__(items)
        self._guard = guard

    def _grow(self, n: int) -> None:
        self._guard.check_time()
        if len(self) + n > self._guard.limits.max_string:
            raise TemplateError(f"chat template builds a dict of more than "
                                f"{self._guard.limits.max_string:,} items")
        self._guard.build(n, "dict")

    def update(self, *args: Any, **kwargs: Any) -> None:
        new = dict(*args, **kwargs)
        self._grow(len(new))
        super().update(new)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self._grow(1)
        return super().setdefault(key, default)


# methods a template may call on the lists and dicts it built itself
_TEMPLATE_MUTATORS = {
    _TemplateList: frozenset(["append", "extend", "insert", "pop", "remove", "clear",
                              "reverse"]),
    _TemplateDict: frozenset(["update", "setdefault", "pop", "popitem", "clear"]),
}


@jinja2.pass_context
def _template_list(context: Any, items: Iterable[Any]) -> _TemplateList:
    return _TemplateList(items, _guard_of(context))


@jinja2.pass_context
def _template_dict(context: Any, items: Mapping[Any, Any]) -> _TemplateDict:
    return _TemplateDict(items, _guard_of(context))


class _BoundTemplate(NodeTransformer):
    """Rewrites a parsed template so loops and `~` go through the rendering's guard,
    and `[...]` / `{...}` literals build lists and dicts the template may change."""

    def visit_List(self, node: nodes.List) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Call(nodes.Name("_ll_list", "load"), [node], [], None, None,
                          lineno=node.lineno)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Call(nodes.Name("_ll_dict", "load"), [node], [], None, None,
                          lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name("_ll_iter", "load"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Call(nodes.Name("_ll_concat", "load"), list(node.nodes), [], None, None,
                          lineno=node.lineno)


class _GenerationTag(jinja2.ext.Extension):
    """Accepts Hugging Face's `{% generation %}...{% endgeneration %}` (renders the body)."""
    tags = {"generation"}

    def parse(self, parser):  # noqa: D102 - jinja hook
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _guard_of(context: Any) -> _Guard:
    guard = context.get("_ll_guard")
    if not isinstance(guard, _Guard):
        raise TemplateError("chat template rendered without its guard")
    return guard


_STR_WIDTH_METHODS = frozenset(["center", "ljust", "rjust", "zfill", "expandtabs"])


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, plus: unsafe access fails at once, and operators,
    string methods and filters that can build large strings are accounted."""

    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def __init__(self, limits: TemplateLimits) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, autoescape=False,
                         extensions=[jinja2.ext.loopcontrols, _GenerationTag])
        self.limits = limits
        self.filters.update(tojson=_tojson, replace=_filter_replace, center=_filter_center,
                            indent=_filter_indent, join=_filter_join, format=_filter_format)
        self.globals.update(range=self._range, raise_exception=_raise_exception,
                            strftime_now=_strftime_now, _ll_list=_template_list,
                            _ll_dict=_template_dict)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # the immutable sandbox refuses every list/dict mutator; allow the few listed
        # ones on the lists and dicts the template built itself
        if attr in _TEMPLATE_MUTATORS.get(type(obj), ()):
            return True
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # the stock sandbox returns an Undefined that only fails when used
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is not allowed in a chat template")

    def _parse(self, source, name, filename):
        return _BoundTemplate().visit(super()._parse(source, name, filename))

    def call_binop(self, context, operator, left, right):  # noqa: D102 - jinja hook
        guard = _guard_of(context)
        if operator == "*":
            for seq, k in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(k, int) \
                        and not isinstance(k, bool):
                    guard.build(_sequence_size(seq) * max(k, 0), "sequence")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 256:
                raise TemplateError("chat template raises a number to a power above 256")
        elif operator == "%" and isinstance(left, str):
            if _BIG_PERCENT_WIDTH.search(left):
                raise TemplateError("chat template uses a %-format width above 9999")
            guard.build(len(left) + len(str(right)))
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                guard.build(len(left) + len(right), "sequence")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja signature
        guard = _guard_of(__context)
        guard.check_time()
        owner = getattr(__obj, "__self__", None)
        if owner is None:   # the sandbox wraps str.format / format_map
            owner = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _STR_WIDTH_METHODS and args and isinstance(args[0], int):
                guard.build(max(args[0], len(owner)))
            elif name == "replace" and len(args) >= 2:
                _check_replace(guard, owner, args[0], args[1], args[2] if len(args) > 2 else -1)
            elif name in ("format", "format_map"):
                if _BIG_FORMAT_WIDTH.search(owner):
                    raise TemplateError("chat template uses a format width above 9999")
                guard.build(len(owner) + sum(len(str(a)) for a in args))
            elif name == "join" and args:
                return guard.join(args[0], owner)
        return super().call(__context, __obj, *args, **kwargs)

    def _range(self, *args: int) -> range:
        r = range(*args)
        if len(r) > self.limits.max_range:
            raise TemplateError(f"chat template asks for range() of {len(r):,} items "
                                f"(limit {self.limits.max_range:,})")
        return r


def _check_replace(guard: _Guard, s: Any, old: Any, new: Any, count: Any) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        n = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        guard.build(len(s) + n * max(0, len(new) - len(old)))


@jinja2.pass_context
def _filter_replace(context, s: Any, old: str, new: str, count: int | None = None) -> str:
    s = str(s)
    _check_replace(_guard_of(context), s, old, new, -1 if count is None else count)
    return s.replace(old, new, -1 if count is None else count)


@jinja2.pass_context
def _filter_center(context, s: Any, width: int = 80) -> str:
    _guard_of(context).build(max(int(width), len(str(s))))
    return str(s).center(width)


@jinja2.pass_context
def _filter_indent(context, s: Any, width: int | str = 4, first: bool = False,
                   blank: bool = False) -> str:
    text = str(s)
    w = len(width) if isinstance(width, str) else int(width)
    _guard_of(context).build(len(text) + max(w, 0) * (text.count("\n") + 1))
    return jinja2.filters.do_indent(text, width, first, blank)


@jinja2.pass_context
def _filter_join(context, items: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    if attribute is not None:
        getter = jinja2.filters.make_attrgetter(context.environment, attribute)
        items = (getter(x) for x in items)
    return _guard_of(context).join(items, str(d))


@jinja2.pass_context
def _filter_format(context, value: str, *args: Any, **kwargs: Any) -> str:
    if _BIG_PERCENT_WIDTH.search(str(value)):
        raise TemplateError("chat template uses a %-format width above 9999")
    _guard_of(context).build(len(str(value)) + sum(len(str(a)) for a in args))
    return jinja2.filters.do_format(value, *args, **kwargs)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Hugging Face's tojson: plain json.dumps, no HTML escaping."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _token_text(metadata: Mapping[str, Any], key: str) -> str:
    tokens = metadata.get("tokenizer.ggml.tokens")
    tid = metadata.get(key)
    if tokens is None or tid is None:
        return ""
    try:
        tid = int(tid)
        return tokens[tid] if 0 <= tid < len(tokens) else ""
    except (TypeError, ValueError, IndexError):
        return ""


class ChatTemplate:
    """A chat template ready to render. `source` is the Jinja text; `is_fallback`
    says it is llamalite's built-in format because the file had none."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 is_fallback: bool = False, limits: TemplateLimits | None = None) -> None:
        if not isinstance(source, str):
            raise TemplateError(f"chat template must be a string, got {type(source).__name__}")
        self.source = source
        self.is_fallback = is_fallback
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.limits = limits or TemplateLimits()
        self._env = _Sandbox(self.limits)
        try:
            self._template = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"chat template has a syntax error on line {e.lineno}: "
                                f"{e.message}") from None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], architecture: str) -> "ChatTemplate":
        """The file's `tokenizer.chat_template`, else the fallback for `architecture`
        (Gemma turns for gemma/gemma2/gemma3, ChatML for everything else)."""
        bos = _token_text(metadata, "tokenizer.ggml.bos_token_id")
        eos = _token_text(metadata, "tokenizer.ggml.eos_token_id")
        source = metadata.get("tokenizer.chat_template")
        if isinstance(source, str) and source.strip():
            return cls(source, bos_token=bos, eos_token=eos)
        fallback = GEMMA_TEMPLATE if architecture in _GEMMA_ARCHS else CHATML_TEMPLATE
        return cls(fallback, bos_token=bos, eos_token=eos, is_fallback=True)

    @property
    def name(self) -> str:
        """'gemma' or 'chatml' for the fallbacks, 'file' for the file's own template."""
        if not self.is_fallback:
            return "file"
        return "gemma" if self.source == GEMMA_TEMPLATE else "chatml"

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True,
               tools: list[dict] | None = None, **extra: Any) -> str:
        """The prompt text for `messages` (dicts with 'role' and 'content').

        add_generation_prompt: end with the opening of the assistant's turn.
        tools: passed to the template as `tools` (OpenAI-style function schemas).
        extra: further template variables (e.g. `enable_thinking=False`).
        Raises TemplateError on any failure, with the template's reason.
        """
        if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
            raise TemplateError("messages must be a list of dicts with 'role' and 'content'")
        guard = _Guard(self.limits)
        context = dict(extra)
        context.update(messages=messages, add_generation_prompt=add_generation_prompt,
                       tools=tools, bos_token=self.bos_token, eos_token=self.eos_token,
                       _ll_guard=guard, _ll_iter=guard.iterate, _ll_concat=guard.concat)
        out: list[str] = []
        size = 0
        try:
            for chunk in self._template.generate(**context):
                size += len(chunk)
                if size > self.limits.max_output:
                    raise TemplateError(f"chat template output exceeds "
                                        f"{self.limits.max_output:,} characters")
                out.append(chunk)
                guard.check_time()
        except TemplateError:
            raise
        except SecurityError as e:
            raise TemplateError(f"chat template blocked by the sandbox: {e}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"chat template failed: {e}") from None
        except RecursionError:
            raise TemplateError("chat template recursed too deeply") from None
        except MemoryError:
            raise TemplateError("chat template ran out of memory") from None
        except Exception as e:  # any error raised by template code is the template's fault
            raise TemplateError(f"chat template failed: {type(e).__name__}: {e}") from None
        return "".join(out)

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, is_fallback={self.is_fallback})"


def chat_prompt_ids(template: Any, tokenizer: Any, messages: list[dict], *,
                    tools: list[dict] | None = None, add_generation_prompt: bool = True,
                    special_in_content: bool = False) -> list[int]:
    """The prompt ids of a conversation: the rendered template, tokenized with BOS,
    keeping one BOS where the template writes its own."""
    text = template.render(list(messages), add_generation_prompt=add_generation_prompt,
                           tools=tools)
    ids = list(tokenizer.tokenize(text, add_special=True, parse_special=True))
    bos = getattr(tokenizer, "bos_id", None)
    if bos is not None and len(ids) >= 2 and ids[0] == ids[1] == bos:
        ids = ids[1:]
    return ids
