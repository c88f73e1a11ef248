"""Read protocol YAML files and report every problem with its file, line and field."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from celltrial.datafiles import SHIPPED_LOADER
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
    return parse_protocol(read_protocol_text(path), source=str(path))


def read_protocol_text(path: Path) -> str:
    """The text of a protocol file (UTF-8, with or without a byte-order mark)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ProtocolError(f"{path}: protocol file not found") from None
    except IsADirectoryError:
        raise ProtocolError(f"{path}: a folder, not a protocol file") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"{path}: cannot read protocol file: not UTF-8 text (byte {exc.start + 1} cannot be "
            "read); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read protocol file ({exc.strerror or exc})") from None


def resolve_protocol(spec: str | Path | None) -> tuple[Protocol, str]:
    """A protocol from a file path or a built-in name (default: the reference protocol).

    Returns the validated protocol and its YAML text (kept verbatim in the study directory).
    """
    if spec is None:
        spec = DEFAULT_PROTOCOL
    path = Path(spec)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        text = read_protocol_text(path)
        return parse_protocol(text, source=str(path)), text
    text = builtin_protocol_text(str(spec))
    return parse_protocol(text, source=f"built-in protocol {spec!r}"), text


#: Values a protocol may expand to through YAML aliases (``*name``); a real one has hundreds.
MAX_VALUES = 100_000
#: Lists or mappings written inside one another in brackets ([[…]], {a: {b: …}}); YAML's parser
#: takes seconds to give up on thousands.
MAX_DEPTH = 100


def flow_depth(text: str) -> int:
    """How deep brackets ([ ], { }) nest in YAML text, outside quotes and comments."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    quote = ""
    comment = False
    previous = "\n"
    for char in text:
        if comment:
            comment = char != "\n"
        elif quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and previous in " \t\n":
            comment = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char
    return deepest


def parse_protocol(text: str, *, source: str = "<protocol>") -> Protocol:
    """Validate protocol YAML text; a :class:`ProtocolError` lists each problem with its line."""
    valid = _parse_valid(text)
    if valid is not None:
        return valid
    if flow_depth(text) > MAX_DEPTH:
        raise ProtocolError(
            f"{source}: lists or sections nested more than {MAX_DEPTH} levels deep; expected a "
            "protocol's sections (study, product…)"
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if expanded_size(root) > MAX_VALUES:
            raise ProtocolError(
                f"{source}: the protocol expands to more than {MAX_VALUES:,} values through "
                "YAML aliases (*name); expected a protocol's sections, written out"
            )
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, …)
        line = text.count("\n", 0, exc.position) + 1
        raise ProtocolError(
            f"{source}, line {line}: not valid YAML: the character #x{exc.character:04x} is not "
            "allowed in YAML text; expected printable text"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProtocolError(f"{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ProtocolError(
            f"{source}: lists or sections nested hundreds of levels deep; expected a protocol's "
            "sections (study, product…)"
        ) from None
    except ValueError as exc:  # a value YAML recognises but cannot build (2020-02-31, 10**5000)
        raise ProtocolError(_unbuildable(root, source, exc)) from None
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


def _parse_valid(text: str) -> Protocol | None:
    """A valid protocol read with libyaml's C parser, once (every command that opens a study
    reads its protocol; the pure-Python parser took 25 ms, twice). None on any problem at all:
    :func:`parse_protocol` then reads the text as before, to say what is wrong with its lines."""
    if SHIPPED_LOADER is yaml.SafeLoader or flow_depth(text) > MAX_DEPTH:
        return None
    if yaml.reader.Reader.NON_PRINTABLE.search(text):  # (the pure-Python reader's own check)
        return None
    try:
        loader = SHIPPED_LOADER(text)
        try:
            root = loader.get_single_node()
            if root is None or expanded_size(root) > MAX_VALUES or _duplicate_keys(root):
                return None
            data = loader.construct_document(root)
        finally:
            loader.dispose()
        return Protocol.model_validate(data) if isinstance(data, dict) else None
    except Exception:  # YAML errors, values it cannot build, nesting, validation: said below
        return None


def expanded_size(root: yaml.Node | None) -> int:
    """How many values the document holds once its aliases are expanded (each node once)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a node that contains itself counts once
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        sizes[id(node)] = min(total, MAX_VALUES + 1)
        return sizes[id(node)]

    return size(root) if root is not None else 0


def _unbuildable(root: yaml.Node | None, source: str, exc: ValueError) -> str:
    """A message naming the line of the first value YAML cannot build, and why."""
    loader = yaml.SafeLoader("")
    for node in _scalars(root, set()):
        try:
            loader.construct_object(node)
        except (ValueError, yaml.YAMLError) as problem:
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "…"
            digits = sum(c.isdigit() for c in node.value)
            why = f"a number of {digits} digits" if "digits" in str(problem) else str(problem)
            return (
                f"{source}, line {node.start_mark.line + 1}: the value {shown!r} cannot be read "
                f"({why}); expected a date that exists or a number of a sensible size"
            )
    return f"{source}: a value cannot be read ({exc})"


def _scalars(node: yaml.Node | None, seen: set[int]) -> list[yaml.ScalarNode]:
    """The scalar nodes of a document, each once, in order."""
    if node is None or id(node) in seen:
        return []
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        return [node]
    children = (
        [n for pair in node.value for n in pair]
        if isinstance(node, yaml.MappingNode)
        else list(node.value)
    )
    return [scalar for child in children for scalar in _scalars(child, seen)]


def _duplicate_keys(node: yaml.Node | None, seen: set[int] | None = None) -> list[tuple[int, str]]:
    """(line, key) of every mapping key that repeats an earlier key of the same mapping (each
    node once: an alias repeats a node, not its keys)."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return []
    seen.add(id(node))
    found: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        keys: set[object] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else id(key)
            if name in keys:
                found.append((key.start_mark.line + 1, str(name)))
            keys.add(name)
            found.extend(_duplicate_keys(value, seen))
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found.extend(_duplicate_keys(item, seen))
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
    text = repr(got)
    shown = (
        ""
        if error["type"] in {"missing", "extra_forbidden"} or isinstance(got, dict | list)
        else f" (got {text if len(text) <= 60 else text[:60] + '…'})"
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
