"""Protocol files a YAML parser chokes on: one ProtocolError naming the file (and the line),
quickly (deep nesting raised RecursionError; an alias bomb took seconds to minutes)."""

from __future__ import annotations

import time

import pytest

from celltrial.errors import ProtocolError
from celltrial.protocol.loader import parse_protocol, read_protocol

BOMB = "\n".join(
    ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh", strict=True)]
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("study: " + "[" * 10000 + "]" * 10000, "nested more than 100 levels deep"),
        ("study:\n" + "".join(" " * i + "- \n" for i in range(3000)), "levels deep"),
        ("study:\n  id: x\nfollow_up_days: " + "9" * 5000, "line 3: the value '9999"),
        ("study:\n  start: 2020-02-31\n", "line 2: the value '2020-02-31' cannot be read"),
        ("study: x\x00\n", "line 1: not valid YAML: the character #x0000 is not allowed"),
        (BOMB, "expands to more than 100,000 values"),
    ],
)
def test_hostile_yaml_is_refused_quickly(text, message):
    started = time.perf_counter()
    with pytest.raises(ProtocolError, match=rf"^p\.yaml.*{message}"):
        parse_protocol(text, source="p.yaml")
    assert time.perf_counter() - started < 5


def test_not_utf8_is_said_in_plain_words(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes("study:\n  title: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ProtocolError, match=r"not UTF-8 text \(byte 20 cannot be read\)") as e:
        read_protocol(path)
    assert "codec" not in str(e.value)
