"""The package's layers: no module imports a layer above its own, and none imports the demo.

From the bottom: ``runtime``, ``languages`` and ``prompts``; ``data``; ``training`` and
``evaluation``; ``export``; ``callbacks``; ``commands`` (the command line, ``__main__``). The
scaling maths (``scaling``) sits below the commands; the demo (``demo``) is a plug-in above them
all, which only configs and tests load. The shims that keep old names working (``model``,
``strategies``) re-export their layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_xllama"

LAYERS = {
    "runtime": 0,
    "languages": 0,
    "prompts": 0,
    "data": 1,
    "training": 2,
    "model": 2,
    "strategies": 2,
    "evaluation": 2,
    "scaling": 2,
    "export": 3,
    "callbacks": 4,
    "commands": 5,
    "__main__": 5,
    "demo": 6,
}
"""Layer of each top-level module or folder of the package (higher may import lower)."""


def modules() -> list[str]:
    """Every module of the package by dotted name, found on disk (importing nothing)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def part(module: str) -> str:
    """The layer key of a dotted module name of the package (its top-level module or folder)."""
    return module.split(".")[1] if "." in module else ""


def imported(module: str) -> set[str]:
    """Package modules that ``module``'s source imports (at the top or inside functions)."""
    path = PACKAGE.parent / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
    return {name for name in found if name.startswith("lightning_xllama.")}


def test_every_part_of_the_package_has_a_layer():
    parts = {part(module) for module in modules()} - {""}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in LAYERS"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} imports {target}"
        for module in modules()
        if part(module)
        for target in sorted(imported(module))
        if LAYERS[part(target)] > LAYERS[part(module)]
    ]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_only_the_demo_imports_the_demo_in_its_source():
    found = [
        module
        for module in modules()
        if part(module) != "demo" and any(part(target) == "demo" for target in imported(module))
    ]
    assert not found, f"modules outside demo/ that import it: {found}"


def test_the_package_without_the_plug_in_holds_no_demo_and_the_plug_in_registers_it():
    """Every module outside demo/ imported in one process pulls in no demo module and registers
    no demo language; then the plug-in, loaded as a config loads it, registers them with the
    core registry and the off-target identifier."""
    others = [m for m in modules() if part(m) not in ("demo", "__main__")]
    code = (
        "import importlib, sys\n"
        f"for name in {others!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('lightning_xllama.demo'))\n"
        "assert not loaded, loaded\n"
        "from lightning_xllama.languages import get_language, import_language_modules\n"
        "from lightning_xllama.languages import known_languages\n"
        "assert not [c for c in known_languages() if c.startswith('syn_')]\n"
        "import_language_modules(['lightning_xllama.demo.languages'])\n"
        "from lightning_xllama.evaluation.off_target import build_identifier\n"
        "assert get_language('syn_far').script == 'Cyrl'\n"
        "assert type(build_identifier(['en', 'syn_far'])).__name__ == 'SyntheticIdentifier'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
