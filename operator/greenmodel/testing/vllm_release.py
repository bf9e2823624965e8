"""A vLLM release's own CLI argument definitions, read from its wheel (for tests that judge our engine flags).

The wheel comes from PyPI (``pip download vllm==X --no-deps``) into ``$GM_CACHE/vllm-wheels`` (default
``~/.cache/greenmodel``), outside the repository. Nothing of vLLM is imported (it needs torch and CUDA): the
parser's source is read with ``ast``. In the 0.33 layout `vllm serve` builds its parser in
``vllm/entrypoints/common/cli_args.py:make_arg_parser``: literal ``add_argument("--x", ...)`` calls, every
dataclass field of ``FrontendArgs`` and ``BaseFrontendArgs`` as ``--field-name``, and
``AsyncEngineArgs.add_cli_args`` in ``vllm/engine/arg_utils.py`` (literal ``add_argument`` calls again). Older
releases keep the frontend in ``vllm/entrypoints/openai/cli_args.py``; both are read.

Not derived: the ``--no-<flag>`` forms argparse's BooleanOptionalAction adds (the operator passes none).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

PARSER_SOURCES = ("vllm/entrypoints/common/cli_args.py", "vllm/entrypoints/openai/cli_args.py",
                  "vllm/engine/arg_utils.py")
FRONTEND_CLASSES = ("FrontendArgs", "BaseFrontendArgs")
QUANTIZATION_SOURCE = "vllm/model_executor/layers/quantization/__init__.py"


def cache_dir() -> Path:
    base = os.environ.get("GM_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                             / "greenmodel")
    return Path(base) / "vllm-wheels"


def image_version(image: str) -> str:
    """``vllm/vllm-openai:v0.33.0`` (or ``...:v0.33.0@sha256:...``) -> ``0.33.0``."""
    ref = image.split("@", 1)[0]
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else ""
    m = re.fullmatch(r"v?(\d+\.\d+\.\d+(?:\.post\d+)?)", tag)
    if not m:
        raise ValueError(f"{image}: no vLLM version tag (vX.Y.Z)")
    return m.group(1)


def wheel_path(version: str, timeout: float = 900) -> Path:
    """The cached wheel of ``vllm==version``, downloaded when missing (into a temporary directory first, so a
    killed download never leaves a partial wheel behind)."""
    d = cache_dir()
    found = sorted(d.glob(f"vllm-{version}-*.whl"))
    if found:
        return found[-1]
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d, prefix=".download-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", f"vllm=={version}", "--no-deps",
                        "--only-binary=:all:", "-d", tmp], check=True, timeout=timeout)
        wheels = sorted(Path(tmp).glob(f"vllm-{version}-*.whl"))
        if not wheels:
            raise FileNotFoundError(f"pip download vllm=={version} left no wheel")
        target = d / wheels[-1].name
        shutil.move(str(wheels[-1]), target)
    return target


def _sources(wheel: Path, names: Iterable[str]) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as z:
        have = set(z.namelist())
        return {n: z.read(n).decode("utf-8") for n in names if n in have}


def _add_argument_flags(tree: ast.AST) -> set[str]:
    flags: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            for a in node.args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--"):
                    flags.add(a.value)
    return flags


def _dataclass_field_flags(tree: ast.AST, classes: Sequence[str]) -> set[str]:
    flags: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    name = stmt.target.id
                    if not name.startswith("_"):
                        flags.add("--" + name.replace("_", "-"))
    return flags


def accepted_flags(wheel: Path) -> frozenset[str]:
    """Every long option `vllm serve` of this release accepts (except the --no- forms, see above)."""
    sources = _sources(wheel, PARSER_SOURCES)
    if "vllm/engine/arg_utils.py" not in sources:
        raise ValueError(f"{wheel.name}: no vllm/engine/arg_utils.py")
    flags: set[str] = set()
    for name, text in sources.items():
        tree = ast.parse(text, filename=name)
        flags |= _add_argument_flags(tree)
        if "cli_args" in name:
            flags |= _dataclass_field_flags(tree, FRONTEND_CLASSES)
    return frozenset(flags)


def quantization_methods(wheel: Path) -> frozenset[str]:
    """The values ``--quantization`` accepts: the ``QuantizationMethods = Literal[...]`` of the release."""
    text = _sources(wheel, [QUANTIZATION_SOURCE]).get(QUANTIZATION_SOURCE)
    if text is None:
        raise ValueError(f"{wheel.name}: no {QUANTIZATION_SOURCE}")
    for node in ast.walk(ast.parse(text)):
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and target.id == "QuantizationMethods" and node.value is not None:
            return frozenset(c.value for c in ast.walk(node.value)
                             if isinstance(c, ast.Constant) and isinstance(c.value, str))
    raise ValueError(f"{wheel.name}: no QuantizationMethods in {QUANTIZATION_SOURCE}")


def unknown_flags(args: Sequence[str], accepted: Iterable[str]) -> list[str]:
    """The ``--flag`` (or ``--flag=value``) tokens of ``args`` the release does not accept."""
    ok = set(accepted)
    return [a for a in args if a.startswith("--") and a.split("=", 1)[0] not in ok]
