"""JSON documents (FHIR bundles) and YAML documents (protocols), and edits that damage them."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass

import yaml
from hypothesis import strategies as st

from tests.fuzz import hostile
from tests.fuzz.binary import apply_byte_edits, byte_edits
from tests.fuzz.tabular import rarely

_fraction = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
_walk = st.lists(_fraction, min_size=1, max_size=7).map(tuple)
_PLACEHOLDER = "__celltrial_fuzz_raw_{}__"


@dataclass(frozen=True)
class TreeEdit:
    """An edit of a JSON/YAML tree at the node reached by ``walk`` (fractions of each level's
    children), or of the document's text (``kind`` deep, alias_bomb, duplicate_key, tab)."""

    kind: str
    walk: tuple[float, ...] = ()
    value: object = None

    def __repr__(self) -> str:
        shown = repr(self.value)
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        return f"{self.kind}{tuple(round(w, 2) for w in self.walk)}={shown}"


def _walk_to(tree: object, walk: tuple[float, ...]) -> tuple[object, object] | None:
    """(container, key) of the node ``walk`` leads to; None when the tree is a leaf."""
    parent, key, node = None, None, tree
    for step, fraction in enumerate(walk):
        if not isinstance(node, dict | list) or not node:
            break
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if step < len(walk) - 1:  # on the way down, go down where one can
            inner = [k for k in keys if isinstance(node[k], dict | list) and node[k]]
            keys = inner or keys
        parent, key = node, keys[min(len(keys) - 1, math.floor(fraction * len(keys)))]
        node = parent[key]
    return None if parent is None else (parent, key)


def apply_tree_edits(tree: object, edits) -> tuple[object, list[str]]:
    """The edited tree and the raw literals its placeholders stand for."""
    tree = copy.deepcopy(tree)
    literals: list[str] = []
    for edit in edits:
        if edit.kind == "root":
            tree = [tree] if edit.value == "wrap" else edit.value
            continue
        target = _walk_to(tree, edit.walk)
        if target is None:
            continue
        parent, key = target
        if edit.kind == "replace":
            parent[key] = copy.deepcopy(edit.value)
        elif edit.kind == "literal":
            parent[key] = _PLACEHOLDER.format(len(literals))
            literals.append(str(edit.value))
        elif edit.kind == "delete":
            del parent[key]
        elif edit.kind == "resource_type":
            node = parent[key]
            if isinstance(node, dict):
                node["resourceType"] = edit.value
            elif isinstance(parent, dict):
                parent["resourceType"] = edit.value
    return tree, literals


def _fill(text: str, literals: list[str], *, quoted: bool) -> str:
    for number, literal in enumerate(literals):
        token = _PLACEHOLDER.format(number)
        text = text.replace(f'"{token}"' if quoted else token, literal)
    return text


# --- FHIR JSON ---------------------------------------------------------------------------------

FHIR_TYPES = ("Patient", "Observation", "Bundle", "Condition", "", "observation", 5, None, [])


def json_edits() -> st.SearchStrategy[TreeEdit]:
    return st.one_of(
        st.builds(TreeEdit, st.just("replace"), _walk, st.sampled_from(hostile.JSON_VALUES)),
        st.builds(TreeEdit, st.just("replace"), _walk, st.sampled_from(hostile.JSON_VALUES)),
        st.builds(TreeEdit, st.just("literal"), _walk, st.sampled_from(hostile.JSON_LITERALS)),
        st.builds(TreeEdit, st.just("delete"), _walk),
        st.builds(TreeEdit, st.just("delete"), _walk),
        st.builds(TreeEdit, st.just("resource_type"), _walk, st.sampled_from(FHIR_TYPES)),
        st.builds(
            TreeEdit,
            st.just("root"),
            st.just(()),
            st.sampled_from(
                ([], "Bundle", None, 5, "wrap", {"resourceType": "Bundle", "entry": {}})
            ),
        ),
        st.builds(TreeEdit, st.just("deep"), st.just(()), st.sampled_from((50, 5000, 10000))),
    )


@dataclass(frozen=True)
class DocumentCase:
    """A seed document, its edits, its encoding and damage to its bytes."""

    seed: str
    edits: tuple[TreeEdit, ...]
    encoding: str = "utf-8"
    bytes_edits: tuple = ()

    def __repr__(self) -> str:
        parts = [self.seed, *map(repr, self.edits)]
        if self.encoding != "utf-8":
            parts.append(f"encoding={self.encoding}")
        parts += map(repr, self.bytes_edits)
        return f"DocumentCase({', '.join(parts)})"


DOCUMENT_ENCODINGS = ("utf-8", "utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "gbk")


def document_cases(seeds: list[str], edits: st.SearchStrategy[TreeEdit]):
    return st.builds(
        DocumentCase,
        st.sampled_from(seeds),
        st.lists(edits, min_size=1, max_size=3).map(tuple),
        st.sampled_from(DOCUMENT_ENCODINGS),
        rarely(st.lists(byte_edits(), min_size=1, max_size=2).map(tuple), ()),
    )


def render_json(case: DocumentCase, document: object) -> bytes:
    tree, literals = apply_tree_edits(document, [e for e in case.edits if e.kind != "deep"])
    text = _fill(json.dumps(tree, ensure_ascii=False), literals, quoted=True)
    for edit in case.edits:
        if edit.kind == "deep":  # written out: json.dumps itself cannot nest this deep
            depth = int(edit.value)
            text = '{"resourceType": "Bundle", "entry": ' + "[" * depth + text + "]" * depth + "}"
    return apply_byte_edits(text.encode(case.encoding, errors="replace"), case.bytes_edits)


# --- protocol YAML -----------------------------------------------------------------------------

_BOMB = "\n".join(
    ['bomb_a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [
        f"bomb_{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]"
        for previous, name in zip("abcdefg", "bcdefgh", strict=True)
    ]
)


def yaml_edits() -> st.SearchStrategy[TreeEdit]:
    return st.one_of(
        st.builds(TreeEdit, st.just("literal"), _walk, st.sampled_from(hostile.YAML_LITERALS)),
        st.builds(TreeEdit, st.just("literal"), _walk, st.sampled_from(hostile.YAML_LITERALS)),
        st.builds(TreeEdit, st.just("replace"), _walk, st.sampled_from(hostile.JSON_VALUES)),
        st.builds(TreeEdit, st.just("delete"), _walk),
        st.builds(TreeEdit, st.just("root"), st.just(()), st.sampled_from(([], "x", None, "wrap"))),
        st.builds(TreeEdit, st.sampled_from(("alias_bomb", "duplicate_key", "tab", "deep"))),
    )


def render_yaml(case: DocumentCase, document: object) -> bytes:
    tree_edits = [e for e in case.edits if e.kind in ("literal", "replace", "delete", "root")]
    tree, literals = apply_tree_edits(document, tree_edits)
    text = _fill(
        yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=10**6),
        literals,
        quoted=False,
    )
    for edit in case.edits:
        if edit.kind == "alias_bomb":
            text += "\n" + _BOMB + "\n"
        elif edit.kind == "duplicate_key":
            first = text.split("\n", 1)[0]
            text += "\n" + first + "\n"
        elif edit.kind == "tab":
            text = text.replace("\n  ", "\n\t", 1)
        elif edit.kind == "deep":
            text = "study: " + "[" * 10000 + "]" * 10000 + "\n" + text
    return apply_byte_edits(text.encode(case.encoding, errors="replace"), case.bytes_edits)
