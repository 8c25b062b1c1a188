"""The layout the README's map describes: each package imports only what lies below it,
and no two modules import each other."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("adapters", "kwai_bridge", "server")

#: (package, what it may import from the project), checked top-down: the first package a
#: module's name starts with decides. The README's "Layout" lists the same floors.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("server", ("kwai_bridge.runtime", "kwai_bridge.web")),
    ("kwai_bridge.cli", ("adapters", "kwai_bridge.")),
    ("kwai_bridge.web", ("adapters", "kwai_bridge.")),
    ("kwai_bridge.kwai", ("kwai_bridge.kwai",)),
    ("kwai_bridge.db", ("kwai_bridge.db",)),
    ("kwai_bridge.outbox", ("adapters", "kwai_bridge.kwai", "kwai_bridge.db", "kwai_bridge.outbox",
                            "kwai_bridge.jsontext")),
    ("kwai_bridge.config", ("adapters", "kwai_bridge.kwai", "kwai_bridge.config", "kwai_bridge.parsing")),
    ("kwai_bridge", ("adapters", "kwai_bridge.")),
    ("adapters", ("adapters", "kwai_bridge.kwai")),
)
#: Never imported from these, whatever the rule above allows.
NEVER = {
    "kwai_bridge.cli": ("server", "kwai_bridge.web.clicks", "kwai_bridge.web.health", "kwai_bridge.web.snippet",
                        "kwai_bridge.web.webhooks", "kwai_bridge.web.responses", "flask"),
    "kwai_bridge.web": ("server", "kwai_bridge.cli"),
    "kwai_bridge": ("server", "kwai_bridge.cli", "kwai_bridge.web", "flask"),
    "adapters": ("flask", "requests", "sqlalchemy", "os", "psycopg", "sqlite3"),
}


def modules() -> dict[str, Path]:
    found = {"server": ROOT / "server.py"}
    for package in ("adapters", "kwai_bridge"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import module` imports the module (and runs the package's
            # __init__, which is not an import of the package's names)
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULE_NAMES)
            names.update(submodules or {node.module})
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


def _package(module: str, packages: list[str]) -> str:
    return next(p for p in packages if _within(module, p))


MODULES = modules()
MODULE_NAMES = frozenset(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_what_lies_below_it(module: str):
    rule_for = _package(module, [p for p, _ in RULES])
    allowed = dict(RULES)[rule_for]
    found = imports(MODULES[module])
    ours = {name for name in found if name.split(".")[0] in PROJECT}
    wrong = sorted(n for n in ours if not any(_within(n, a) or n == a.rstrip(".") for a in allowed)
                   and not (n in MODULES and _within(n, rule_for)))
    assert not wrong, f"{module} ({rule_for}) imports {wrong}"
    owners = sorted((p for p in NEVER if _within(module, p)), key=len)
    never = NEVER[owners[-1]] if owners else ()
    banned = sorted(n for n in found if any(_within(n, b) for b in never))
    assert not banned, f"{module} imports {banned}"


def test_no_two_modules_import_each_other():
    graph = {m: {n for n in imports(p) if n in MODULES and n != m} for m, p in MODULES.items()}
    mutual = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())})
    assert not mutual


def test_the_rules_see_every_module_and_would_catch_a_wrong_import(tmp_path):
    assert {"server", "adapters.shopify", "kwai_bridge.kwai.wire", "kwai_bridge.web.webhooks"} <= set(MODULES)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("from kwai_bridge.pipeline import Pipeline\nimport flask\n")
    assert {"kwai_bridge.pipeline", "flask"} <= imports(wrong)
    adapters_allowed = dict(RULES)["adapters"]
    assert not any(_within("kwai_bridge.pipeline", a) for a in adapters_allowed)
