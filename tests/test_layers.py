"""The engine's boundary, checked on its source: it never imports Frappe, the CLI or the stores,
reads no environment variable, and changes no library's module globals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "email_account_app" / "engine"
SOURCES = sorted(ENGINE.rglob("*.py"))


def _tree(path: Path) -> ast.Module:
	return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_the_engine_imports_no_shell(path):
	for node in ast.walk(_tree(path)):
		names: list[str] = []
		if isinstance(node, ast.Import):
			names = [a.name for a in node.names]
		elif isinstance(node, ast.ImportFrom):
			names = [("." * node.level) + (node.module or "")]
		for name in names:
			assert not name.startswith("frappe"), f"{path.name} imports {name}"
			assert not name.startswith(("..cli", "..sqlite", "..frappe", "email_account_app.cli")), (
				f"{path.name} imports {name}"
			)


def _variables_read(tree: ast.Module) -> list[tuple[int, str]]:
	"""(line, name) of each environment variable read by name: os.environ[...], os.environ.get(...),
	os.getenv(...). Handing the whole environment on to a child process reads no knob."""
	found = []
	for node in ast.walk(tree):
		target = None
		if isinstance(node, ast.Subscript) and _is_environ(node.value):
			target = node.slice
		elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
			if (node.func.attr == "get" and _is_environ(node.func.value)) or node.func.attr == "getenv":
				target = node.args[0] if node.args else None
		if target is not None:
			name = target.value if isinstance(target, ast.Constant) else "?"
			found.append((node.lineno, str(name)))
	return found


def _is_environ(node: ast.AST) -> bool:
	return isinstance(node, ast.Attribute) and node.attr in ("environ", "environb")


#: the parse worker puts this package first on its child's import path, after the parent's own
IMPORT_PATH = {"PYTHONPATH"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_the_engine_reads_no_environment_variable(path):
	knobs = [(line, name) for line, name in _variables_read(_tree(path)) if name not in IMPORT_PATH]
	assert not knobs, f"{path.name} reads environment variables {knobs}: pass them in as settings"


def _module_names(tree: ast.Module) -> set[str]:
	names = set()
	for node in ast.walk(tree):
		if isinstance(node, ast.Import):
			names.update((a.asname or a.name).split(".")[0] for a in node.names)
	return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_the_engine_changes_no_library_global(path):
	"""``poplib._MAXLINE = ...`` would change every POP3 client of the process: bounds are
	arguments of the engine's own classes instead."""
	tree = _tree(path)
	modules = _module_names(tree)
	for node in ast.walk(tree):
		targets = node.targets if isinstance(node, ast.Assign) else []
		if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
			targets = [node.target]
		for target in targets:
			if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
				assert target.value.id not in modules, (
					f"{path.name}:{node.lineno} sets {target.value.id}.{target.attr}"
				)
