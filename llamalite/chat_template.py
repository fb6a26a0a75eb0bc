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
bounded (see TemplateLimits): `range()` sizes, the total number of loop iterations,
string sizes built by `*`, `%`, `+`, `~`, filters and string methods, integer sizes
(so `x * x` in a loop cannot run for minutes), `tojson` indentation, the output
length, and the wall-clock time, checked at every loop iteration, call, filter,
attribute and item access. `lipsum` is not available.
"""
from __future__ import annotations

import contextvars
import functools
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

__all__ = ["ChatTemplate", "TemplateLimits", "GEMMA_TEMPLATE", "CHATML_TEMPLATE",
           "chat_prompt_ids"]

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
                 max_output: int = 4_000_000, max_seconds: float = 5.0,
                 max_int_bits: int = 4096, max_json_indent: int = 64) -> None:
        self.max_range = max_range            # items in one range()
        self.max_iterations = max_iterations  # loop iterations in the whole rendering
        self.max_string = max_string          # characters in one string or list built
        self.max_allocated = max_allocated    # characters built by string operations, in total
        self.max_output = max_output          # characters of output
        self.max_seconds = max_seconds        # wall-clock time
        self.max_int_bits = max_int_bits      # bits of any integer operand or result
        self.max_json_indent = max_json_indent  # tojson(indent=...)


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
            raise TemplateError(f"chat template took longer than its time limit of "
                                f"{self.limits.max_seconds} s to render (TemplateLimits."
                                "max_seconds)")

    def check_int(self, n: int, what: str) -> None:
        """Refuse an integer operand or result above max_int_bits: arithmetic on larger
        ones (a number squared in a loop) runs for seconds in one operation."""
        if n.bit_length() > self.limits.max_int_bits:
            raise TemplateError(f"chat template {what} with more than "
                                f"{self.limits.max_int_bits:,} bits (TemplateLimits.max_int_bits)")

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Every `{% for %}` loop runs through here (see _bound_template)."""
        limit = self.limits.max_iterations
        for item in iterable:
            self.iterations += 1
            if self.iterations > limit:
                raise TemplateError(f"chat template ran more than {limit:,} loop iterations "
                                    "(runaway loop?)")
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


# The guard of the rendering in progress, for the hooks jinja calls without a context
# (attribute and item access, filters, tests).
_current_guard: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar(
    "llamalite_template_guard", default=None)


def _tick() -> None:
    guard = _current_guard.get()
    if guard is not None:
        guard.check_time()


def _timed(func: Any) -> Any:
    """A filter or test that checks the rendering's clock before it runs."""
    @functools.wraps(func)   # keeps jinja's pass_context marker
    def timed(*args: Any, **kwargs: Any) -> Any:
        _tick()
        return func(*args, **kwargs)
    return timed


_STR_WIDTH_METHODS = frozenset(["center", "ljust", "rjust", "zfill"])
_ARITHMETIC = {"+": "adds", "-": "subtracts", "*": "multiplies", "/": "divides",
               "//": "divides", "%": "takes the remainder of", "**": "raises"}


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, plus: unsafe access fails at once, and operators,
    string methods and filters that can build large strings are accounted."""

    # every arithmetic operator: none is folded at compile time, all are checked
    intercepted_binops = frozenset(_ARITHMETIC)

    def __init__(self, limits: TemplateLimits) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, autoescape=False,
                         extensions=[jinja2.ext.loopcontrols, _GenerationTag])
        self.limits = limits
        self.filters.update(tojson=_tojson, replace=_filter_replace, center=_filter_center,
                            indent=_filter_indent, join=_filter_join, format=_filter_format,
                            batch=_filter_batch, slice=_filter_slice, sum=_filter_sum,
                            wordwrap=_filter_wordwrap)
        self.filters = {name: _timed(f) for name, f in self.filters.items()}
        self.tests = {name: _timed(f) for name, f in self.tests.items()}
        self.globals.pop("lipsum", None)     # lipsum(n) builds n paragraphs of text
        self.globals.update(range=self._range, raise_exception=_raise_exception,
                            strftime_now=_strftime_now, _ll_list=_template_list,
                            _ll_dict=_template_dict)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # the immutable sandbox refuses every list/dict mutator; allow the few listed
        # ones on the lists and dicts the template built itself
        if attr in _TEMPLATE_MUTATORS.get(type(obj), ()):
            return True
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:  # noqa: D102 - jinja hook
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:  # noqa: D102 - jinja hook
        _tick()
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # the stock sandbox returns an Undefined that only fails when used
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is not allowed in a chat template")

    def _parse(self, source, name, filename):
        return _BoundTemplate().visit(super()._parse(source, name, filename))

    def call_binop(self, context, operator, left, right):  # noqa: D102 - jinja hook
        guard = _guard_of(context)
        guard.check_time()
        ints = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
        for x in ints:
            guard.check_int(x, f"{_ARITHMETIC[operator]} an integer")
        if len(ints) == 2:
            _check_int_result(guard, operator, left, right)
        if operator == "*":
            for seq, k in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(k, int) \
                        and not isinstance(k, bool):
                    guard.build(_sequence_size(seq) * max(k, 0), "sequence")
        elif operator == "%" and isinstance(left, str):
            if _BIG_PERCENT_WIDTH.search(left):
                raise TemplateError("chat template uses a %-format width above 9999")
            guard.build(len(left) + len(str(right)))
        elif operator == "+":
            if isinstance(left, (str, bytes, list, tuple)) \
                    and isinstance(right, (str, bytes, list, tuple)):
                guard.build(len(left) + len(right), "sequence")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja signature
        guard = _guard_of(__context)
        guard.check_time()
        owner = getattr(__obj, "__self__", None)
        if owner is None:   # the sandbox wraps str.format / format_map
            owner = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, int) and not isinstance(owner, bool):
            guard.check_int(owner, "calls a method of an integer")
            if name == "to_bytes":
                length = args[0] if args else kwargs.get("length", 1)
                if isinstance(length, int):
                    guard.build(length, "byte string")
        elif isinstance(owner, (str, bytes, bytearray)):
            if name in _STR_WIDTH_METHODS and args and isinstance(args[0], int):
                guard.build(max(args[0], len(owner)))
            elif name == "expandtabs":
                size = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(size, int):
                    guard.build(len(owner) + owner.count("\t" if isinstance(owner, str)
                                                        else b"\t") * max(size, 0))
            elif name == "translate":
                table = args[0] if args else None
                longest = max((len(v) for v in table.values() if isinstance(v, (str, bytes))),
                              default=1) if isinstance(table, Mapping) else 1
                guard.build(len(owner) * max(longest, 1))
            elif name == "replace" and len(args) >= 2:
                _check_replace(guard, owner, args[0], args[1], args[2] if len(args) > 2 else -1)
            elif name in ("format", "format_map"):
                if _BIG_FORMAT_WIDTH.search(owner):
                    raise TemplateError("chat template uses a format width above 9999")
                guard.build(len(owner) + sum(len(str(a)) for a in args))
            elif name == "join" and args and isinstance(owner, str):
                return guard.join(args[0], owner)
            elif name == "join" and args:
                items = list(guard.iterate(args[0]))
                guard.build(sum(len(x) if isinstance(x, (bytes, bytearray)) else 1
                                for x in items) + len(owner) * len(items), "byte string")
                return super().call(__context, __obj, items, **kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, int) and not isinstance(result, bool):
            guard.check_int(result, "builds an integer")
        return result

    def _range(self, *args: int) -> range:
        r = range(*args)
        if len(r) > self.limits.max_range:
            raise TemplateError(f"chat template asks for range() of {len(r):,} items "
                                f"(limit {self.limits.max_range:,})")
        return r


def _check_int_result(guard: _Guard, operator: str, left: int, right: int) -> None:
    """Refuse `left operator right` on integers when its result would exceed the limit;
    decided from the operands' sizes, before anything is computed."""
    bits = guard.limits.max_int_bits
    if operator == "*":
        too_big = left.bit_length() + right.bit_length() - 1 > bits
    elif operator == "**":
        # |left| ** right has at least right * (bit_length - 1) + 1 bits
        too_big = abs(left) > 1 and right > 0 and right * (abs(left).bit_length() - 1) >= bits
    else:   # + and - add at most one bit (the next operation checks it); the others shrink
        too_big = False
    if too_big:
        verb = "raises an integer to a power" if operator == "**" else \
            f"{_ARITHMETIC[operator]} integers"
        raise TemplateError(f"chat template {verb} whose result has more than {bits:,} bits "
                            "(TemplateLimits.max_int_bits)")


def _check_replace(guard: _Guard, s: Any, old: Any, new: Any, count: Any) -> None:
    if isinstance(s, (str, bytes)) and isinstance(old, type(s)) and isinstance(new, type(s)):
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


@jinja2.pass_context
def _filter_batch(context, value: Any, linecount: int, fill_with: Any = None) -> Any:
    if fill_with is not None and isinstance(linecount, int):
        _guard_of(context).build(linecount, "batch")
    return jinja2.filters.do_batch(value, linecount, fill_with)


@jinja2.pass_context
def _filter_slice(context, value: Any, slices: int, fill_with: Any = None) -> Any:
    if isinstance(slices, int):
        _guard_of(context).build(slices, "list of slices")
    return jinja2.filters.sync_do_slice(value, slices, fill_with)


@jinja2.pass_context
def _filter_sum(context, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, (int, float)):   # lists and tuples would add up quadratically
        raise TemplateError("chat template sums with a start that is not a number")
    guard = _guard_of(context)
    result = jinja2.filters.sync_do_sum(context.environment, guard.iterate(iterable),
                                        attribute, start)
    if isinstance(result, int) and not isinstance(result, bool):
        guard.check_int(result, "sums to an integer")
    return result


@jinja2.pass_context
def _filter_wordwrap(context, s: str, width: int = 79, break_long_words: bool = True,
                     wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    text = str(s)
    joiner = len(wrapstring) if isinstance(wrapstring, str) else 1
    _guard_of(context).build(len(text) + (len(text) + 1) * joiner)
    return jinja2.filters.do_wordwrap(context.environment, text, width, break_long_words,
                                      wrapstring, break_on_hyphens)


def _json_layout_size(x: Any, width: int, item_sep: int, key_sep: int, budget: int) -> int:
    """Characters that json.dumps adds to x's values for indentation (`width` per level),
    newlines and separators (lengths `item_sep`, `key_sep`), counted without building
    anything; stops counting once past `budget`."""
    extra = 0
    stack = [(x, 0)]
    while stack and extra <= budget:
        obj, level = stack.pop()
        if isinstance(obj, Mapping):
            children = list(obj.values())
            extra += len(children) * key_sep
        elif isinstance(obj, (list, tuple)):
            children = list(obj)
        else:
            continue
        if children:
            extra += (len(children) - 1) * item_sep
            if width >= 0:
                extra += len(children) * (1 + (level + 1) * width) + 1 + level * width
            stack.extend((c, level + 1) for c in children)
    return extra


@jinja2.pass_context
def _tojson(context, x: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Hugging Face's tojson: plain json.dumps, no HTML escaping. The indentation is
    capped (TemplateLimits.max_json_indent), and the size of the indentation and
    separators is counted before dumping."""
    guard = _guard_of(context)
    width = -1    # no indentation
    if indent is not None:
        if isinstance(indent, bool) or not isinstance(indent, (int, str)):
            raise TemplateError(f"chat template calls tojson with indent={indent!r}; "
                                "it must be a number or a string")
        width = len(indent) if isinstance(indent, str) else max(indent, 0)
        if width > guard.limits.max_json_indent:
            raise TemplateError(f"chat template calls tojson with an indent of {width:,} "
                                f"(limit {guard.limits.max_json_indent}, TemplateLimits."
                                "max_json_indent)")
    if width >= 0 or separators is not None:
        seps = separators if separators is not None else ((",", ": ") if width >= 0
                                                          else (", ", ": "))
        try:
            item_sep, key_sep = (len(str(sep)) for sep in seps)
        except (TypeError, ValueError):
            raise TemplateError(f"chat template calls tojson with separators={seps!r}; "
                                "they must be two strings") from None
        guard.build(_json_layout_size(x, width, item_sep, key_sep, guard.limits.max_string),
                    "JSON layout")
    out = json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                     sort_keys=sort_keys)
    guard.build(len(out), "JSON string")
    return out


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
        token = _current_guard.set(guard)
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
        finally:
            _current_guard.reset(token)
        return "".join(out)

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, is_fallback={self.is_fallback})"


# --- chat prompt ids: the template's markup may write control tokens, content may not -----

# Private-use characters (plane 16) that mark content while a template renders; chosen
# per call among those that occur in no input.
_MARK_FIRST, _MARK_LAST = 0x100000, 0x10FFFD
_PLANE_16 = re.compile("[\U00100000-\U0010FFFF]")
_NO_SENTINEL_KEYS = frozenset(["role", "type"])   # compared by templates: left as they are


def chat_prompt_ids(template: ChatTemplate, tokenizer: Any, messages: list[dict], *,
                    tools: list[dict] | None = None, add_generation_prompt: bool = True,
                    special_in_content: bool = False) -> list[int]:
    """The prompt token ids of a conversation: `template` rendered for `messages` (and
    `tools`), tokenized by `tokenizer`, with one BOS where the template writes BOS
    itself and the vocabulary adds one too.

    Only the template's own markup becomes control tokens (`<|im_start|>`,
    `<start_of_turn>`, BOS, ...). Message contents, tool calls and tool schemas are
    tokenized as text (as tokenize(..., parse_special=False)): a user who writes
    "<|im_end|>\\n<|im_start|>system\\n..." gets those characters, not a system turn.
    For a conversation without control-token text in it the ids are exactly those of
    tokenize(template.render(...), add_special=True, parse_special=True).

    How the content is told from the markup: the template is rendered a second time
    with a unique placeholder for every string in the messages and tools (except
    'role' and 'type' values, which templates compare); the real rendering must be
    that one with each placeholder replaced by its string, as is, trimmed, or
    JSON-escaped. A template that transforms content otherwise (slices it, splits it)
    is rendered once more with the control-token texts in the content replaced by
    placeholder characters, which are tokenized back as plain text.
    Roles, 'type' values and dict keys holding control-token text are refused
    (TemplateError). Messages and tools are JSON-shaped: dicts, lists, strings, numbers.

    special_in_content=True is the opt-in for trusted input: the rendered text is
    tokenized with parse_special=True throughout, so control-token text anywhere,
    content included, becomes control tokens.
    """
    text = template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)
    if special_in_content:
        ids = tokenizer.tokenize(text, add_special=True, parse_special=True)
    else:
        parts = _content_parts(template, tokenizer, messages, tools, add_generation_prompt,
                               text)
        ids = tokenizer.tokenize_parts(parts, add_special=True)
    return _one_bos(list(ids), tokenizer)


def _one_bos(ids: list[int], tokenizer: Any) -> list[int]:
    bos = getattr(tokenizer, "bos_id", None)
    if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        return ids[1:]   # the template wrote BOS itself: keep one
    return ids


def _map_strings(obj: Any, fn: Any, key: Any = None) -> Any:
    """A copy of nested dicts/lists with every string leaf s replaced by fn(s, key)
    (key: the dict key it sits under)."""
    if isinstance(obj, str):
        return fn(obj, key)
    if isinstance(obj, Mapping):
        return {k: _map_strings(v, fn, k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_map_strings(v, fn, key) for v in obj]
    return obj


def _markup_strings(obj: Any, key: Any = None) -> Iterator[tuple[str, str]]:
    """(what, text) for the strings a template reads as structure: dict keys and
    'role'/'type' values."""
    if isinstance(obj, str):
        if key in _NO_SENTINEL_KEYS:
            yield f"{key} value", obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(k, str):
                yield "key", k
            yield from _markup_strings(v, k)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _markup_strings(v, key)


def _free_marks(n: int, *texts: str) -> list[str]:
    """n private-use characters that occur in none of `texts`."""
    used = set()
    for t in texts:
        if _PLANE_16.search(t):
            used.update(_PLANE_16.findall(t))
    marks: list[str] = []
    for c in range(_MARK_LAST, _MARK_FIRST - 1, -1):
        if len(marks) == n:
            break
        if chr(c) not in used:
            marks.append(chr(c))
    if len(marks) < n:
        raise TemplateError("the conversation uses too many private-use characters to "
                            "mark its content")
    return marks


def _content_parts(template: ChatTemplate, tokenizer: Any, messages: list[dict],
                   tools: list[dict] | None, add_generation_prompt: bool,
                   text: str) -> list[tuple[str, bool]]:
    """`text` (the real rendering) as (piece, parse_special) parts: markup True,
    content False."""
    data = {"messages": messages, "tools": tools}
    for what, s in _markup_strings(data):
        spans = tokenizer.hidden_special_spans(s)
        if spans:
            a, b, _ = spans[0]
            raise TemplateError(f"a message or tool {what} {s!r} holds the control token "
                                f"{s[a:b]!r}; only message contents may hold such text "
                                "(it is tokenized as text there)")
    strings: list[str] = []
    _map_strings(data, lambda s, k: strings.append(s) if s else None)
    all_text = [template.source, template.bos_token, template.eos_token, *strings]
    parts = _parts_by_placeholders(template, data, add_generation_prompt, text, all_text)
    if parts is None:
        parts = _parts_by_defusing(template, tokenizer, data, add_generation_prompt,
                                   all_text)
    return parts


def _parts_by_placeholders(template: ChatTemplate, data: dict, add_generation_prompt: bool,
                           text: str, all_text: list[str]) -> list[tuple[str, bool]] | None:
    """Parts found by rendering with a placeholder per string; None when the real
    rendering is not the placeholder one with each string put back (as it is, trimmed,
    or JSON-escaped)."""
    open_mark, close_mark = _free_marks(2, *all_text)
    strings: list[str] = []

    def placeholder(s: str, key: Any) -> str:
        if not s or key in _NO_SENTINEL_KEYS:
            return s
        strings.append(s)
        return f"{open_mark}{len(strings) - 1}{close_mark}"

    marked = _map_strings(data, placeholder)
    try:
        rendered = template.render(marked["messages"], tools=marked["tools"],
                                   add_generation_prompt=add_generation_prompt)
    except TemplateError:
        return None
    pattern = re.compile(f"{re.escape(open_mark)}(\\d+){re.escape(close_mark)}")
    pieces: list[str | int] = []     # markup text, or the index of a string
    pos = 0
    for m in pattern.finditer(rendered):
        pieces.append(rendered[pos:m.start()])
        pieces.append(int(m.group(1)))
        pos = m.end()
    pieces.append(rendered[pos:])
    if any(isinstance(p, int) and p >= len(strings) for p in pieces):
        return None
    return _align(pieces, strings, text)


def _variants(s: str) -> list[str]:
    """The forms in which templates write a string: as it is, trimmed, JSON-escaped."""
    out = []
    for v in (s, s.strip(), s.lstrip(), s.rstrip(), json.dumps(s, ensure_ascii=False)[1:-1]):
        if v not in out:
            out.append(v)
    return out


def _align(pieces: list[str | int], strings: list[str],
           text: str) -> list[tuple[str, bool]] | None:
    """Match pieces against `text` in order: markup exactly, string i as one of its
    variants. Depth-first, each (piece, position) tried once; the parts found are kept
    as a chain of (part, previous) links."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[int, int, Any]] = [(0, 0, None)]
    while stack:
        i, pos, chain = stack.pop()
        if (i, pos) in seen:
            continue
        seen.add((i, pos))
        if i == len(pieces):
            if pos != len(text):
                continue
            parts: list[tuple[str, bool]] = []
            while chain is not None:
                part, chain = chain
                parts.append(part)
            return parts[::-1]
        piece = pieces[i]
        if isinstance(piece, str):
            if text.startswith(piece, pos):
                stack.append((i + 1, pos + len(piece), ((piece, True), chain)))
            continue
        for v in reversed(_variants(strings[piece])):
            if text.startswith(v, pos):
                stack.append((i + 1, pos + len(v), ((v, False), chain)))
    return None


def _parts_by_defusing(template: ChatTemplate, tokenizer: Any, data: dict,
                       add_generation_prompt: bool,
                       all_text: list[str]) -> list[tuple[str, bool]]:
    """Parts found by rendering with every control-token text in the strings replaced by
    a private-use character (one per token), which becomes that text again, as plain text."""
    token_text: dict[int, str] = {}

    def found(s: str, key: Any) -> str:
        if key not in _NO_SENTINEL_KEYS:
            for a, b, tid in tokenizer.hidden_special_spans(s):
                token_text[tid] = s[a:b]
        return s

    _map_strings(data, found)
    marks = dict(zip(token_text, _free_marks(len(token_text), *all_text)))

    def defuse(s: str, key: Any) -> str:
        if key in _NO_SENTINEL_KEYS:
            return s
        spans = tokenizer.hidden_special_spans(s)
        for a, b, tid in reversed(spans):
            s = s[:a] + marks[tid] + s[b:]
        return s

    defused = _map_strings(data, defuse)
    rendered = template.render(defused["messages"], tools=defused["tools"],
                               add_generation_prompt=add_generation_prompt)
    text_of = {m: token_text[tid] for tid, m in marks.items()}
    parts: list[tuple[str, bool]] = []
    start = 0
    for i, c in enumerate(rendered):
        if c in text_of:
            parts += [(rendered[start:i], True), (text_of[c], False)]
            start = i + 1
    parts.append((rendered[start:], True))
    return parts
