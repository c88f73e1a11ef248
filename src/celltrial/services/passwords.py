"""Passwords of the web app: how they are hashed, and which ones are refused.

Hashing is Argon2id (``argon2-cffi``) with the library's default cost; :func:`hash_cost` lowers it
for tests only. :func:`check_password` refuses, each with a message that says why:

- fewer than :data:`MIN_PASSWORD_LENGTH` characters, more than :data:`MAX_PASSWORD_LENGTH`, or
  spaces at either end;
- one of the most common passwords (shipped list ``common_passwords.json``, 19,640 entries, from
  Django's ``CommonPasswordValidator`` list), also with digits or symbols added before or after
  it, with separators between its letters, or with look-alike characters (``p@ssw0rd``);
- digits only (a date, a phone number);
- keyboard runs, alphabetical runs and repeated characters with too little else
  (``qwertyuiop12``, ``aaaaaaaaaaaa``, ``abcdefgh1234``) and a short piece repeated
  (``abc1abc1abc1``);
- the user name, the study id or the product's name anywhere in it, in any case and with or
  without separators.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from celltrial.services.errors import AccountError
from celltrial.services.plain_text import control_character_problem

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
#: Words that say where the password is used: refused inside a password like the study id.
CONTEXT_WORDS = ("celltrial",)

_hasher = PasswordHasher()
_dummy_hashes: dict[tuple[int, int, int], str] = {}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for a damaged hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made at another cost than the current one."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def dummy_hash() -> str:
    """A hash at the current cost that no password matches: checked against when the user name
    is unknown, so that an unknown name costs the same time as a wrong password."""
    key = (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = _hasher.hash(secrets.token_urlsafe(24))
    return _dummy_hashes[key]


@contextmanager
def hash_cost(
    *, time_cost: int = 1, memory_cost: int = 8192, parallelism: int = 1
) -> Iterator[None]:
    """Hash at a lower cost inside the block (tests: a sign-in then takes milliseconds)."""
    global _hasher
    previous = _hasher
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    try:
        yield
    finally:
        _hasher = previous


def generate_one_time_password() -> str:
    """A random password for an account reset: 4 groups of 5 letters and digits (about 100 bits),
    without look-alike characters, to be changed at the next sign-in."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    while True:
        groups = ["".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4)]
        candidate = "-".join(groups)
        if not _problems(candidate, ()):
            return candidate


# --- strength ------------------------------------------------------------------------------------


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (lower case)."""
    text = files("celltrial.services").joinpath("common_passwords.json").read_text("utf-8")
    return frozenset(p.lower() for p in json.loads(text)["passwords"])


#: Rows of a keyboard, the alphabet and the digits: neighbours in either direction are a run.
_SEQUENCES = (
    "`1234567890-=",
    "~!@#$%^&*()_+",
    "qwertyuiop[]\\",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "qwertzuiopü",  # German layout
    "azertyuiop",  # French layout
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
)
_NEIGHBOURS = frozenset(
    pair for row in _SEQUENCES for a, b in itertools.pairwise(row) for pair in ((a, b), (b, a))
)
_SEPARATORS = re.compile(r"[\s._\-]+")
_LOOK_ALIKES = str.maketrans(
    {
        "@": "a",
        "4": "a",
        "0": "o",
        "3": "e",
        "1": "i",
        "!": "i",
        "$": "s",
        "5": "s",
        "7": "t",
        "+": "t",
        "8": "b",
        "9": "g",
    }
)
_EDGES = re.compile(r"^[^a-z]+|[^a-z]+$")
#: Characters outside runs and repeats that a password needs at least.
_MIN_UNPATTERNED = 5


def _variants(lowered: str) -> set[str]:
    """The password as written, without separators, with look-alikes replaced, and each of
    these without the digits and symbols before and after its letters."""
    forms = {lowered, _SEPARATORS.sub("", lowered)}
    forms |= {f.translate(_LOOK_ALIKES) for f in list(forms)}
    forms |= {f.replace("1", "l") for f in list(forms)}
    forms |= {_EDGES.sub("", f) for f in list(forms)}
    return {f for f in forms if len(f) >= 4}


def _unpatterned(lowered: str) -> int:
    """How many characters lie outside keyboard runs, alphabetical runs and repeated characters
    of three or more."""
    count, run = 0, 1
    for previous, current in itertools.pairwise(lowered):
        if previous == current or (previous, current) in _NEIGHBOURS:
            run += 1
            continue
        count += run if run < 3 else 0
        run = 1
    return count + (run if run < 3 else 0)


def _repeated_piece(text: str) -> bool:
    """Whether ``text`` is one shorter piece written two or more times (``abc1abc1``)."""
    return len(text) >= 4 and (text + text).find(text, 1) < len(text)


def _contained(needle: str, haystack_forms: Iterable[str]) -> bool:
    needle = needle.lower()
    needles = {needle, _SEPARATORS.sub("", needle)}
    return any(n and len(n) >= 3 and n in form for n in needles for form in haystack_forms)


def _problems(password: str, context: Iterable[tuple[str, str]]) -> list[str]:
    lowered = password.lower()
    problems: list[str] = []
    forms = _variants(lowered)
    compact = _SEPARATORS.sub("", lowered)
    for what, word in context:
        if word and _contained(word, {lowered, compact}):
            problems.append(f"it contains {what} ({word!r}), which others know")
    if re.sub(r"[\W_]+", "", lowered).isdigit():  # digits, perhaps with punctuation between
        problems.append("it is digits only (like a date or a phone number), guessed quickly")
    elif forms & common_passwords():
        problems.append(
            "it is one of the most common passwords (or one with digits, symbols or look-alike "
            "characters added), the first ones an attacker tries"
        )
    elif _repeated_piece(compact):
        problems.append(
            "it is one character or one short piece written over and over (like 'aaaa' or 'abcabc')"
        )
    elif _unpatterned(lowered) < _MIN_UNPATTERNED:
        problems.append(
            "it is mostly keyboard runs, alphabetical runs or repeated characters "
            "(like 'qwerty', 'abcdef', '123456' or 'aaaa')"
        )
    return problems


def check_password(password: str, *, username: str = "", study_ids: Iterable[str] = ()) -> None:
    """Raise :class:`AccountError` naming every reason ``password`` is refused."""
    problem = control_character_problem(password)
    if problem is not None:
        raise AccountError(f"password: {problem}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: expected at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"password: expected at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise AccountError("password: must not start or end with spaces")
    context = [("the user name", username)] if username else []
    context += [("the study id", s) for s in study_ids if s]
    context += [("the name of this system", w) for w in CONTEXT_WORDS]
    problems = _problems(password, context)
    if problems:
        raise AccountError(
            "password refused: "
            + "; ".join(problems)
            + ". Choose another: a few unrelated words, or a passphrase of your own, work well."
        )
