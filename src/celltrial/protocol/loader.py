"""Read protocol YAML files and report every problem with its file, line and field."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from celltrial.errors import ProtocolError
from celltrial.protocol.model import Protocol

BUILTIN_PACKAGE = "celltrial.protocol.builtin"
DEFAULT_PROTOCOL = "huc-msc-covid19"


def builtin_protocols() -> dict[str, str]:
    """Names of the built-in protocols mapped to their study titles."""
    found: dict[str, str] = {}
    for entry in sorted(files(BUILTIN_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            name = entry.name.removesuffix(".yaml")
            found[name] = parse_protocol(entry.read_text(encoding="utf-8"), source=name).study.title
    return found


def builtin_protocol_text(name: str) -> str:
    """The YAML text of the built-in protocol ``name``."""
    entry = files(BUILTIN_PACKAGE).joinpath(f"{name}.yaml")
    if not entry.is_file():
        known = ", ".join(sorted(p.removesuffix(".yaml") for p in _builtin_files()))
        raise ProtocolError(f"no built-in protocol named {name!r}; built-ins: {known}")
    return entry.read_text(encoding="utf-8")


def _builtin_files() -> list[str]:
    return [e.name for e in files(BUILTIN_PACKAGE).iterdir() if e.name.endswith(".yaml")]


def load_builtin_protocol(name: str = DEFAULT_PROTOCOL) -> Protocol:
    """Load and validate a built-in protocol by name."""
    return parse_protocol(builtin_protocol_text(name), source=f"built-in protocol {name!r}")


def read_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(f"{path}: protocol file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read protocol file ({exc})") from None
    return parse_protocol(text, source=str(path))


def resolve_protocol(spec: str | Path | None) -> tuple[Protocol, str]:
    """A protocol from a file path or a built-in name (default: the reference protocol).

    Returns the validated protocol and its YAML text (kept verbatim in the study directory).
    """
    if spec is None:
        spec = DEFAULT_PROTOCOL
    path = Path(spec)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        protocol = read_protocol(path)
        return protocol, path.read_text(encoding="utf-8")
    text = builtin_protocol_text(str(spec))
    return parse_protocol(text, source=f"built-in protocol {spec!r}"), text


def parse_protocol(text: str, *, source: str = "<protocol>") -> Protocol:
    """Validate protocol YAML text; a :class:`ProtocolError` lists each problem with its line."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProtocolError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: a protocol must be a mapping of sections (study, product…)")
    duplicates = list(_duplicate_keys(root))
    if duplicates:
        raise ProtocolError(
            f"{source}: {len(duplicates)} key(s) given twice (only one value can count):\n"
            + "\n".join(f"  - line {line}: {key!r}" for line, key in duplicates)
        )
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error, root, source) for error in exc.errors()]
        raise ProtocolError(
            f"{source}: {len(problems)} problem(s) in the protocol:\n"
            + "\n".join(f"  - {p}" for p in problems)
        ) from None


def _duplicate_keys(node: yaml.Node | None) -> list[tuple[int, str]]:
    """(line, key) of every mapping key that repeats an earlier key of the same mapping."""
    found: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                found.append((key.start_mark.line + 1, key.value))
            seen.add(key.value)
            found.extend(_duplicate_keys(value))
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found.extend(_duplicate_keys(item))
    return found


def _describe(error: dict[str, Any], root: yaml.Node | None, source: str) -> str:
    loc = tuple(error["loc"])
    field = _field_path(loc)
    line = _line_of(root, loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "extra_forbidden":
        message = "unknown field (check its spelling)"
    where = f"line {line}" if line else "top level"
    got = error.get("input")
    shown = (
        ""
        if error["type"] in {"missing", "extra_forbidden"} or isinstance(got, dict | list)
        else f" (got {got!r})"
    )
    return f"{where}: {field or '<protocol>'}: {message}{shown}"


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for key in loc:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(("." if parts else "") + str(key))
    return "".join(parts)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node found along ``loc``."""
    best = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            if match is None:
                # an extra field: point at its key; a missing one: stay on the parent
                key_node = next((k for k, _ in node.value if k.value == str(key)), None)
                return key_node.start_mark.line + 1 if key_node is not None else best
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                return best
            node = node.value[key]
        else:
            break
        best = node.start_mark.line + 1
    return best
