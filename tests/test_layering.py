"""The layering holds: the runtime (llamalite/) imports neither the server nor the CLI,
and the server does not import the CLI. Checked on the installed package's sources."""
from __future__ import annotations

import ast
from pathlib import Path

import llamalite

PKG = Path(llamalite.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = ".".join(("llamalite", *path.relative_to(PKG).parent.parts))
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def _violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted(folder.glob("*.py")):
        for name in _imports(path):
            if name.startswith(forbidden):
                out.append(f"{path.relative_to(PKG)} imports {name}")
    return out


def test_runtime_imports_neither_server_nor_cli():
    assert _violations(PKG, ("llamalite.server", "llamalite.cli")) == []


def test_server_does_not_import_the_cli():
    assert _violations(PKG / "server", ("llamalite.cli",)) == []


def test_the_check_sees_imports():
    """The checker resolves relative imports (so the tests above can fail)."""
    names = _imports(PKG / "server" / "backend.py")
    assert "llamalite.llm" in names and "llamalite.server.settings" in names


def test_the_cli_starts_without_the_engine():
    """`llamalite quantize` or `info` need the file reader, not the engine, the tokenizer
    or the template engine: the package imports those on first use."""
    import subprocess
    import sys
    code = ("import sys, llamalite.cli.main, llamalite\n"
            "assert llamalite.__version__\n"
            "print(' '.join(m for m in ('llamalite.engine', 'llamalite.llm', 'llamalite.tokenizer', "
            "'jinja2') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""
    r = subprocess.run([sys.executable, "-P", "-c", "import llamalite; llamalite.LLM; import sys; "
                        "print('llamalite.engine' in sys.modules)"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "True"
