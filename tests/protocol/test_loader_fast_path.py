"""A protocol is read with libyaml's C parser once when it is valid, giving the protocol the
pure-Python reading gave; anything wrong falls back to that reading, whose messages are kept."""

from __future__ import annotations

import pytest
import yaml

from celltrial.errors import ProtocolError
from celltrial.protocol import loader
from celltrial.protocol.loader import DEFAULT_PROTOCOL, builtin_protocol_text, parse_protocol

pytestmark = pytest.mark.skipif(
    loader.SHIPPED_LOADER is yaml.SafeLoader, reason="PyYAML built without libyaml"
)

BUILTIN = builtin_protocol_text(DEFAULT_PROTOCOL)


def _variants() -> list[str]:
    """The built-in protocol as written, dumped in flow and block style, with anchors and
    aliases (valid, and an unknown section), with CRLF line ends, a number in hexadecimal."""
    data = yaml.safe_load(BUILTIN)
    labs = "[DDIMER, CRP, IL6, LYM, NEUT, CD4, CD19, CD1656, WBC, PLAT, HGB, ALT, AST, BILI, CREAT]"
    assert BUILTIN.count(labs) > 2
    first = BUILTIN.index(labs)
    aliased = (
        BUILTIN[:first] + "&labs " + labs + BUILTIN[first + len(labs) :].replace(labs, "*labs")
    )
    return [
        BUILTIN,
        yaml.safe_dump(data, default_flow_style=True, width=70),
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
        aliased,
        BUILTIN.replace("\nstudy:", "\ndefaults: &d {a: 1}\nstudy:", 1),  # unknown section
        BUILTIN.replace("\n", "\r\n"),
        BUILTIN.replace("\nfollow_up_days: 28", "\nfollow_up_days: 0x1C", 1),
    ]


def _slow(text: str, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(loader, "_parse_valid", lambda _text: None)
        return _outcome(text)


def _outcome(text: str) -> object:
    try:
        return parse_protocol(text, source="p.yaml")
    except ProtocolError as exc:
        return str(exc)


@pytest.mark.parametrize("index", range(len(_variants())))
def test_the_fast_reading_gives_what_the_pure_python_reading_gave(index, monkeypatch):
    text = _variants()[index]
    slow = _slow(text, monkeypatch)
    assert isinstance(slow, str) == (index == 4)  # the unknown section only
    assert _outcome(text) == slow
    fast = loader._parse_valid(text)
    if isinstance(slow, str):
        assert fast is None
    else:
        assert fast == slow
        assert fast.model_dump() == slow.model_dump()


def test_the_builtin_protocol_takes_the_fast_reading():
    assert loader._parse_valid(BUILTIN) is not None


@pytest.mark.parametrize(
    "text",
    [
        "study: [unclosed\n",
        "study:\n  id: a\n  id: b\n",  # a key given twice
        "study: x\x00\n",
        "study:\n  start: 2020-02-31\n",
        "study: " + "[" * 200 + "]" * 200,
        "study:\n" + "".join(" " * i + "- \n" for i in range(3000)),
        "- a list\n- not a mapping\n",
        "",
        "a: 1\n---\nb: 2\n",
        BUILTIN.replace("\nstudy:", "\nstduy:", 1),
    ],
)
def test_anything_wrong_falls_back_to_the_reading_with_lines(text, monkeypatch):
    assert loader._parse_valid(text) is None
    slow = _slow(text, monkeypatch)
    assert isinstance(slow, str)
    assert _outcome(text) == slow
