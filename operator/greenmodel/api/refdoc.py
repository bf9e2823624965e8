"""Field reference for every spec and status field, generated from the CRD schema.

`python -m greenmodel.api.refdoc --write` writes docs/reference.md; `--check` fails when it is stale
(tests/unit/test_refdoc.py runs the check), so the reference never drifts from crds/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterator

from greenmodel.api import crdgen

REPO = Path(__file__).resolve().parents[3]
OUT = REPO / "docs" / "reference.md"
_LIMITS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
           "minItems", "maxItems", "pattern")


def _type(node: dict[str, Any]) -> str:
    t = node.get("type", "object" if "properties" in node else "any")
    if t == "array":
        return f"[]{_type(node.get('items', {}))}"
    if node.get("format"):
        return f"{t} ({node['format']})"
    return t


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    parts += [f"{k}={node[k]}" for k in _LIMITS if k in node]
    parts += [f"rule: {r['message']}" for r in node.get("x-kubernetes-validations", [])]
    return "; ".join(parts).replace("|", "\\|")


def _rows(node: dict[str, Any], path: str, required: set[str]) -> Iterator[tuple[str, ...]]:
    for name, child in (node.get("properties") or {}).items():
        p = f"{path}.{name}"
        default = child.get("default")
        yield (f"`{p}`", _type(child), "yes" if name in required else "",
               "" if default is None else f"`{default}`",
               " ".join(str(child.get("description", "")).split()).replace("|", "\\|"), _constraints(child))
        target = child.get("items", child) if child.get("type") == "array" else child
        yield from _rows(target, p + ("[]" if child.get("type") == "array" else ""), set(target.get("required", [])))


def render() -> str:
    lines = ["# Field reference (greenmodel.dev/v1alpha1)", "",
             "Generated from the CRD schema by `python -m greenmodel.api.refdoc --write`. Do not edit.", ""]
    for kind in ("GreenModel", "ModelCatalog"):
        crd = crdgen.crd(kind)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        lines += [f"## {kind} ({crd['spec']['scope']})", ""]
        for rule in schema.get("x-kubernetes-validations", []):
            lines.append(f"- Object rule: {rule['message']}")
        for part in ("spec", "status"):
            node = schema["properties"].get(part)
            if not node:
                continue
            lines += ["", f"### {part}", "", "| field | type | required | default | description | validation |",
                      "|---|---|---|---|---|---|"]
            lines += ["| " + " | ".join(r) + " |" for r in _rows(node, part, set(node.get("required", [])))]
            for rule in node.get("x-kubernetes-validations", []):
                lines.append(f"\n- `{part}` rule: {rule['message']}")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m greenmodel.api.refdoc", description=__doc__)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(REPO)}")
    g.add_argument("--check", action="store_true", help="exit 1 if the reference is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.write:
        OUT.write_text(text)
        return 0
    if not OUT.exists() or OUT.read_text() != text:
        print(f"{OUT.relative_to(REPO)} is stale: run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
