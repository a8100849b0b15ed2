"""Version ordering and name rules, including property-based checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.core.names import validate_name
from registry.core.versions import Version, parse_version

numbers = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5)


def spell(parts: list[int], pre: str | None = None) -> str:
    text = ".".join(map(str, parts))
    return f"{text}-{pre}" if pre else text


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.9", "1.10"),
        ("2", "2.1"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-beta"),
        ("1.0.0-rc.2", "1.0.0-rc.10"),
        ("1.0.0-1", "1.0.0-alpha"),
        ("9", "10"),
    ],
)
def test_ordering_examples(low: str, high: str) -> None:
    assert Version(low) < Version(high)
    assert Version(high) > Version(low)


def test_equal_spellings_share_one_key() -> None:
    assert Version("1") == Version("1.0") == Version("1.0.0")
    assert Version("1.0.0").key == "1"
    assert Version("1.0.0-rc.1").key == "1-rc.1"
    assert str(Version("1.0.0")) == "1.0.0"


@given(numbers, st.integers(min_value=0, max_value=3))
def test_trailing_zeros_never_change_the_value(parts: list[int], zeros: int) -> None:
    a = Version(spell(parts))
    b = Version(spell(parts + [0] * zeros))
    assert a == b and a.key == b.key and hash(a) == hash(b)


@given(numbers, numbers)
def test_order_matches_numeric_tuples(a: list[int], b: list[int]) -> None:
    def padded(p: list[int]) -> list[int]:
        return p + [0] * (6 - len(p))

    assert (Version(spell(a)) < Version(spell(b))) == (padded(a) < padded(b))


@given(numbers, st.from_regex(r"[0-9A-Za-z]{1,5}(\.[0-9A-Za-z]{1,5}){0,2}", fullmatch=True))
def test_prerelease_sorts_before_its_release(parts: list[int], pre: str) -> None:
    assert Version(spell(parts, pre)) < Version(spell(parts))


@pytest.mark.parametrize("bad", ["", "latest", "v1", "1.", ".1", "1..2", "1.0-", "a", "1 0", "1/2"])
def test_bad_versions_name_the_rule(bad: str) -> None:
    with pytest.raises(ValueError, match="version"):
        parse_version(bad)


def test_version_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        parse_version(1)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["a", "my:model", "A-b_c.d:e", "x" * 200, "..a", "1"])
def test_good_names(good: str) -> None:
    assert validate_name(good) == good


@pytest.mark.parametrize("bad", ["", "a/b", "a@1", "a b", ".", "..", "x" * 201, "é", "a\\b"])
def test_bad_names_name_the_rule(bad: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        validate_name(bad)


@given(st.text(max_size=30))
def test_any_text_is_either_valid_or_a_clear_error(text: str) -> None:
    try:
        validate_name(text)
    except ValueError as exc:
        assert "letters, digits" in str(exc)
    else:
        assert "/" not in text and "@" not in text and text.strip(".")
