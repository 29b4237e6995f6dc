"""The package uses no private attribute (`_name`) of any dependency, standard library included.

A private attribute can change in any release without notice. The checker reads each
module of core, storage, bot, payments and partnerbot with `ast` and looks at every
attribute access `x._name` (dunder and `_sunder_` names are not private):

- on `self`/`cls`: the name must be one our own class (or an own base class) defines, and
  no dependency class in its MRO may define it (a subclass reading `self._initialized`
  that python-telegram-bot's Application keeps is exactly what this catches);
- on an imported module: only our own modules;
- on anything else: only a name our code defines in the same module (one class of ours
  touching another instance's private in the same module), and never a name that a
  class of a dependency imported by the package defines (aiosqlite's `conn._conn`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "storage", "bot", "payments", "partnerbot")

def is_private(name: str) -> bool:
    if name.startswith("__") and name.endswith("__"):
        return False  # dunder: Python's protocols
    if len(name) > 2 and name.startswith("_") and name.endswith("_"):
        return False  # _sunder_: enum's public hooks (_missing_, _generate_next_value_)
    return name.startswith("_")


def own(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] in PACKAGES


def privates_of_class(cls: type) -> set[str]:
    """Private names a class defines itself: methods, class attributes, slots."""
    names = set(vars(cls))
    slots = vars(cls).get("__slots__", ())
    names |= {slots} if isinstance(slots, str) else set(slots)
    return {n for n in names if is_private(n)}


@cache
def module_classes_privates(name: str) -> frozenset[str]:
    """Private names of every class reachable at the top of a dependency module."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return frozenset()
    found: set[str] = set()
    for value in list(vars(module).values()):
        if inspect.isclass(value):
            for klass in value.__mro__:
                if klass is not object:
                    found |= privates_of_class(klass)
    return frozenset(found)


@dataclass
class ClassInfo:
    name: str
    bases: list[str]
    defined: set[str] = field(default_factory=set)


@dataclass
class Found:
    line: int
    expr: str
    attr: str


class Checker(ast.NodeVisitor):
    """Private attribute accesses in one module that touch something not ours."""

    def __init__(
        self,
        tree: ast.Module,
        own_classes: dict[str, ClassInfo],
        runtime: ModuleType | None,
        dependency_privates: frozenset[str],
    ) -> None:
        self.own_classes = own_classes
        self.runtime = runtime
        self.dependency_privates = dependency_privates
        self.modules: dict[str, str] = {}  # local name -> imported module
        self.module_privates: set[str] = set()
        self.stack: list[ast.ClassDef] = []
        self.found: list[Found] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    self.modules[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in sys.modules or _is_module(full):
                        self.modules[alias.asname or alias.name] = full
            if isinstance(node, ast.ClassDef):
                self.module_privates |= defined_in_class(node)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.module_privates |= {node.name} if is_private(node.name) else set()
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.module_privates |= {node.id} if is_private(node.id) else set()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node)
        self.generic_visit(node)
        self.stack.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        if not is_private(node.attr):
            return
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls") and self.stack:
            if not self.ours_on_self(self.stack[-1], node.attr):
                self.report(node)
        elif isinstance(value, ast.Name) and value.id in self.modules:
            if not own(self.modules[value.id]):
                self.report(node)
        elif node.attr not in self.module_privates or node.attr in self.dependency_privates:
            self.report(node)

    def ours_on_self(self, klass: ast.ClassDef, attr: str) -> bool:
        runtime = getattr(self.runtime, klass.name, None) if self.runtime else None
        if inspect.isclass(runtime):
            for base in runtime.__mro__[1:]:
                foreign = base is not object and not own(base.__module__)
                if foreign and attr in privates_of_class(base):
                    return False  # a dependency's private, read or overridden
        return attr in self.defined_by(klass.name, set())

    def defined_by(self, name: str, seen: set[str]) -> set[str]:
        info = self.own_classes.get(name)
        if info is None or name in seen:
            return set()
        seen.add(name)
        names = set(info.defined)
        for base in info.bases:
            names |= self.defined_by(base, seen)
        return names

    def report(self, node: ast.Attribute) -> None:
        self.found.append(Found(node.lineno, ast.unparse(node), node.attr))


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def defined_in_class(node: ast.ClassDef) -> set[str]:
    """Names a class of ours defines: methods, class attributes, self./cls. assignments."""
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(item.name)
        elif isinstance(item, ast.Assign):
            names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.ctx, ast.Store)
            and isinstance(sub.value, ast.Name)
            and sub.value.id in ("self", "cls")
        ):
            names.add(sub.attr)
    return {n for n in names if is_private(n)}


def base_name(expr: ast.expr) -> str:
    if isinstance(expr, ast.Subscript):
        return base_name(expr.value)
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return expr.id if isinstance(expr, ast.Name) else ""


def package_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


@cache
def parsed() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in package_modules()}


@cache
def own_classes() -> dict[str, ClassInfo]:
    classes: dict[str, ClassInfo] = {}
    for tree in parsed().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                info = classes.setdefault(node.name, ClassInfo(node.name, []))
                info.bases += [base_name(b) for b in node.bases]
                info.defined |= defined_in_class(node)
    return classes


@cache
def dependency_privates() -> frozenset[str]:
    """Private names of the classes of every dependency module the package imports."""
    names: set[str] = set()
    for tree in parsed().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for name in modules:
                if not own(name):
                    names |= module_classes_privates(name)
    return frozenset(names)


def private_uses(
    source: str,
    *,
    runtime: ModuleType | None = None,
    classes: dict[str, ClassInfo] | None = None,
    deps: frozenset[str] = frozenset(),
) -> list[Found]:
    tree = ast.parse(source)
    if classes is None:
        classes = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = ClassInfo(
                    node.name, [base_name(b) for b in node.bases], defined_in_class(node)
                )
    checker = Checker(tree, classes, runtime, deps)
    checker.visit(tree)
    return checker.found


def violations() -> Iterator[tuple[str, Found]]:
    deps = dependency_privates()
    for path, tree in parsed().items():
        runtime = importlib.import_module(module_name(path))
        checker = Checker(tree, own_classes(), runtime, deps)
        checker.visit(tree)
        for found in checker.found:
            yield str(path.relative_to(ROOT)), found


# -- the checker itself -----------------------------------------------------------------


def test_the_checker_flags_a_private_attribute_of_a_dependency_object() -> None:
    source = (
        "import aiosqlite\n"
        "class Store:\n"
        "    def __init__(self, conn):\n"
        "        self._conn = conn\n"  # ours: fine
        "        raw = conn._conn\n"  # aiosqlite's, though we use the same name
        "        aiosqlite._private_helper()\n"
    )
    found = private_uses(source, deps=frozenset({"_conn", "_execute"}))
    assert [(f.line, f.expr) for f in found] == [
        (5, "conn._conn"), (6, "aiosqlite._private_helper"),
    ]


def test_the_checker_flags_a_subclass_reading_its_dependency_base_private() -> None:
    class Base:  # stands in for a dependency class (defined outside our packages)
        __slots__ = ("_initialized",)

    class Mine(Base):
        pass

    runtime = ModuleType("fake")
    runtime.Mine = Mine  # type: ignore[attr-defined]
    source = (
        "class Mine(Base):\n"
        "    async def initialize(self):\n"
        "        fresh = not self._initialized\n"
    )
    found = private_uses(source, runtime=runtime)
    assert [(f.line, f.expr) for f in found] == [(3, "self._initialized")]


def test_the_checker_lets_our_own_privates_and_dunders_be() -> None:
    source = (
        "from enum import Enum\n"
        "class Money:\n"
        "    _zero = 0\n"
        "    def __init__(self, v):\n"
        "        self._v = v\n"
        "    def __eq__(self, other):\n"
        "        return self._v == other._v and self.__class__ is other.__class__\n"
        "    def _helper(self):\n"
        "        return self._zero + Money._zero\n"
        "class Kind(Enum):\n"
        "    A = 1\n"
        "    @classmethod\n"
        "    def _missing_(cls, value):\n"
        "        return cls.A\n"
        "class Child(Money):\n"
        "    def f(self):\n"
        "        return self._helper()\n"
    )
    assert private_uses(source) == []


def test_the_checker_flags_an_undefined_private_on_self() -> None:
    source = "class Thing(Exception):\n    def f(self):\n        return self._secret\n"
    assert [f.expr for f in private_uses(source)] == ["self._secret"]


def test_the_walk_sees_every_package() -> None:
    seen = {path.relative_to(ROOT).parts[0] for path in package_modules()}
    assert seen == set(PACKAGES)


# -- the package ------------------------------------------------------------------------


def test_no_private_attribute_of_a_dependency_is_used() -> None:
    found = [f"{path}:{f.line}: {f.expr}" for path, f in violations()]
    assert found == [], "private attributes of dependencies:\n" + "\n".join(found)
