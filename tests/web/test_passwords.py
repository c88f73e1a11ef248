"""Password rules: the common-password list shipped as data, keyboard runs, repeated characters,
digits only, the user name and the study id anywhere in it; one-time passwords pass them."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from celltrial.services.errors import AccountError
from celltrial.services.passwords import (
    MIN_PASSWORD_LENGTH,
    check_password,
    common_passwords,
    generate_one_time_password,
    hash_cost,
    hash_password,
    needs_rehash,
    verify_password,
)

STUDY = "HUC-MSC-COVID19"
pytestmark = pytest.mark.full_password_cost  # the default cost outside hash_cost() is tested


def refused(password: str, *, username: str = "alice", study_ids=(STUDY,)) -> str:
    with pytest.raises(AccountError) as caught:
        check_password(password, username=username, study_ids=study_ids)
    return str(caught.value)


def test_the_shipped_list_is_a_real_list_of_common_passwords():
    data = json.loads(files("celltrial.services").joinpath("common_passwords.json").read_text())
    assert data["count"] == len(data["passwords"]) >= 19_000
    assert "Django" in data["source"] and "Redistribution" in data["license"]
    listed = common_passwords()
    assert {"123456", "password", "qwerty", "iloveyou", "dragon", "monkey"} <= listed
    assert data["passwords"][:3] == ["123456", "123456789", "qwerty"]  # most common first


@pytest.mark.parametrize(
    "password",
    [
        "password1234",  # from the issue
        "Password1234!",
        "p@ssw0rd2024!",  # look-alike characters
        "iloveyou2020!!",
        "PASS-WORD-1234",  # separators
        "qwertyuiop12",
        "1qaz2wsx3edc4rfv",
        "sunshine12345",
        "football!2024",
    ],
)
def test_common_passwords_and_their_variants_are_refused(password):
    assert "most common passwords" in refused(password)


@pytest.mark.parametrize(
    ("password", "what"),
    [
        ("aaaaaaaaaaaa", "over and over"),  # from the issue
        ("zzzzzzzzzzzzzzzz", "over and over"),
        ("abc1abc1abc1", "over and over"),
        ("tulipbananatulipbanana", "over and over"),
        ("123456789012", "digits only"),
        ("2020-02-17 08:00", "digits only"),  # a date and time
        ("asdfghjkl;'zx", "keyboard runs"),
        ("mnbvcxzlkjhgf", "keyboard runs"),
        ("zyxwvutsrqpo12", "keyboard runs"),
        ("ghjkl7890-=[]", "keyboard runs"),
    ],
)
def test_patterns_are_refused(password, what):
    message = refused(password)
    assert what is None or what in message, message


@pytest.mark.parametrize(
    ("password", "what"),
    [
        ("Alice-in-the-garden-7", "the user name ('alice')"),
        ("my name is ALICE ok?", "the user name"),
        ("huc-msc-covid19 trial ok", "the study id ('HUC-MSC-COVID19')"),
        ("hucmsccovid19 my study", "the study id"),
        ("HUC MSC COVID19 kestrel", "the study id"),
        ("kestrel celltrial yellow", "the name of this system"),
    ],
)
def test_the_user_name_and_the_study_id_are_refused_in_any_case_and_as_a_part(password, what):
    assert what in refused(password)


def test_a_short_user_name_does_not_refuse_every_password_that_holds_its_letters():
    check_password("a quiet kestrel over the jetty", username="jo", study_ids=(STUDY,))


def test_length_and_spaces():
    assert f"at least {MIN_PASSWORD_LENGTH} characters" in refused("k3strel!")
    assert "spaces" in refused(" kestrel jetty yellow")
    assert "at most" in refused("kestrel " * 40)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery 7",
        "my dog eats 7 socks",
        "Tr0ub4dor&3xyz",
        "lantern orchid ferry 42",
        "Zürich im Nebel 1987",
    ],
)
def test_good_passwords_pass(password):
    check_password(password, username="alice", study_ids=(STUDY,))


def test_one_time_passwords_are_random_and_pass_the_rules():
    made = {generate_one_time_password() for _ in range(50)}
    assert len(made) == 50
    for password in made:
        check_password(password, username="alice", study_ids=(STUDY,))
        assert len(password) == 23


def test_the_hash_cost_can_be_lowered_for_tests_only_inside_the_block():
    with hash_cost():
        cheap = hash_password("lantern orchid ferry 42")
        assert "m=8192,t=1,p=1" in cheap
        assert not needs_rehash(cheap)
    assert needs_rehash(cheap)  # signing in with it re-hashes at the full cost
    assert verify_password(cheap, "lantern orchid ferry 42")
    assert not verify_password(cheap, "lantern orchid ferry 43")
    assert not verify_password("not a hash", "x")
