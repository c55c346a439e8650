"""Named lists: matching, expiry against event time, config and CSV loading."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskengine import lists as lists_module
from riskengine.exceptions import ConfigError, ListError
from riskengine.lists import ListEntry, ListStore, parse_expiry

T2030 = 1_893_456_000_000  # 2030-01-01T00:00:00Z


def store_with(*values: Any) -> ListStore:
    store = ListStore()
    store.create("l", reason="test list")
    for value in values:
        store.add("l", value)
    return store


# --- matching ------------------------------------------------------------------------------

@pytest.mark.parametrize(("stored", "probe", "expected"), [
    ("dev-1", "dev-1", True),
    ("dev-1", "DEV-1", False),
    ("dev-1", " dev-1", False),
    ("123", 123, True),
    (123, "123", True),
    (123, 123, True),
    (123, 123.0, True),
    (123, 123.5, False),
    ("123.5", 123.5, False),
    ("True", True, False),
    ("1", True, False),
    ("None", None, False),
    ("x", ["x"], False),
    ("x", {"x": 1}, False),
    (-7, "-7", True),
])
def test_values_match_by_string_form(stored: Any, probe: Any, expected: bool) -> None:
    store = store_with(stored)
    assert store.contains("l", probe, 0) is expected
    assert (store.lookup("l", probe, 0) is not None) is expected


def test_int_and_str_of_the_same_value_are_one_entry() -> None:
    store = store_with(123, "123")
    assert [e.value for e in store.entries("l")] == ["123"]


def test_unknown_list_is_an_error() -> None:
    store = store_with("a")
    for call in (lambda: store.contains("nope", "a", 0), lambda: store.add("nope", "a"),
                 lambda: store.remove("nope", "a"), lambda: store.entries("nope"),
                 lambda: store.lookup("nope", "a")):
        with pytest.raises(ListError, match="unknown list 'nope'"):
            call()


@pytest.mark.parametrize("value", [None, True, 1.5, "", ["a"], "x" * 1001])
def test_bad_values_are_refused(value: Any) -> None:
    with pytest.raises(ListError):
        store_with().add("l", value)


def test_create_remove_names_entries() -> None:
    store = ListStore()
    store.create("b", reason="second")
    store.create("a")
    assert store.names() == ["a", "b"] and len(store) == 2
    assert store.reason("b") == "second"
    with pytest.raises(ListError, match="already exists"):
        store.create("a")
    with pytest.raises(ListError, match="invalid"):
        store.create("has space")
    store.add("a", "x", reason="seen in fraud", expires_at_ms=10)
    store.add("a", 5)
    assert store.entries("a") == [ListEntry("x", 10, "seen in fraud"), ListEntry(5, None, "")]
    assert store.entries("a")[0].to_dict() == {"value": "x", "expires_at_ms": 10,
                                               "reason": "seen in fraud"}
    assert store.remove("a", "x") is True
    assert store.remove("a", "x") is False
    assert store.remove("a", "5") is True
    assert store.remove("a", None) is False
    assert store.entries("a") == []


def test_adding_again_replaces_the_entry() -> None:
    store = store_with()
    store.add("l", "x", expires_at_ms=10)
    store.add("l", "x")
    assert store.contains("l", "x", 10**15)
    with pytest.raises(ListError, match="expires_at_ms"):
        store.add("l", "y", expires_at_ms="soon")  # type: ignore[arg-type]


# --- expiry -----------------------------------------------------------------------------------

def test_expiry_is_judged_against_event_time() -> None:
    store = store_with()
    store.add("l", "x", expires_at_ms=1000)
    assert store.contains("l", "x", 0)
    assert store.contains("l", "x", 999)
    assert not store.contains("l", "x", 1000)
    assert not store.contains("l", "x", 5000)
    assert store.contains("l", "x", None)  # no event time: expiry not checked
    assert store.lookup("l", "x", 1000) is None
    assert store.lookup("l", "x", 999) == ListEntry("x", 1000, "")
    # Still stored (a replay of older events must see it) until purged.
    assert len(store.entries("l")) == 1
    assert store.purge_expired(999) == 0
    assert store.purge_expired(1000) == 1
    assert not store.contains("l", "x", 0)


@pytest.mark.parametrize(("given", "expected"), [
    (0, 0),
    ("1000", 1000),
    (1_700_000_000_123, 1_700_000_000_123),
    ("2030-01-01T00:00:00Z", T2030),
    ("2030-01-01T08:00:00+08:00", T2030),
    ("2030-01-01T00:00:00.250+00:00", T2030 + 250),
    (datetime(2030, 1, 1, tzinfo=UTC), T2030),
])
def test_parse_expiry(given: Any, expected: int) -> None:
    assert parse_expiry(given) == expected


@pytest.mark.parametrize(("given", "fragment"), [
    ("2030-01-01T00:00:00", "no UTC offset"),
    (datetime(2030, 1, 1), "no UTC offset"),
    (date(2030, 1, 1), "date without a time"),
    ("next tuesday", "not an ISO-8601 time"),
    (True, "not a time"),
    (-1, "negative"),
    (1.5, "not a time"),
])
def test_parse_expiry_errors(given: Any, fragment: str) -> None:
    with pytest.raises(ListError, match=fragment):
        parse_expiry(given)


# --- config --------------------------------------------------------------------------------------

def test_example_config_lists() -> None:
    path = Path(lists_module.__file__).parent / "examples" / "config.yaml"
    config = yaml.safe_load(path.read_text("utf-8"))
    store = ListStore.from_config(config["lists"], path.parent)
    assert store.names() == ["blocked_devices", "blocked_ips"]
    assert store.reason("blocked_ips") == "proxies and bullet-proof hosting"
    assert store.contains("blocked_ips", "203.0.113.66", 0)
    assert store.contains("blocked_devices", "dev-blocked-0001", T2030 * 2)
    assert store.contains("blocked_devices", "dev-blocked-0003", T2030 - 1)
    assert not store.contains("blocked_devices", "dev-blocked-0003", T2030)
    assert store.lookup("blocked_devices", "dev-blocked-0003", 0) == ListEntry(
        "dev-blocked-0003", T2030, "chargeback ring")


def test_config_accepts_yaml_timestamps_and_empty_lists() -> None:
    section = yaml.safe_load(
        "a:\n  values:\n    - {value: x, expires: 2030-01-01T00:00:00Z}\n    - 42\n"
        "b:\nc: {}\n")
    store = ListStore.from_config(section)
    assert store.entries("a") == [ListEntry("x", T2030, ""), ListEntry(42, None, "")]
    assert store.entries("b") == [] and store.entries("c") == []
    assert ListStore.from_config(None).names() == []


@pytest.mark.parametrize(("section", "fragment"), [
    (["a"], "`lists:` must be a mapping"),
    ({"a": ["x"]}, "list 'a': expected a mapping"),
    ({"a": {"valeus": ["x"]}}, "list 'a': unknown key(s) valeus"),
    ({"a": {"values": "x"}}, "list 'a': `values` must be a list"),
    ({"a": {"values": [True]}}, "list 'a', values[0]: value True"),
    ({"a": {"values": ["x", None]}}, "list 'a', values[1]: value None"),
    ({"a": {"values": [{"expires": 5}]}}, "list 'a', values[0]: missing `value`"),
    ({"a": {"values": [{"value": "x", "until": 5}]}}, "values[0]: unknown key(s) until"),
    ({"a": {"values": [{"value": "x", "expires": "soon"}]}}, "values[0]: 'soon' is not"),
    ({"a": {"values": [{"value": "x", "expires": date(2030, 1, 1)}]}}, "date without"),
    ({"a": {"values": [{"value": "x", "reason": 5}]}}, "values[0]: reason must be"),
    ({"a": {"reason": 5}}, "list 'a': reason must be a string"),
    ({"a": {"file": 5}}, "list 'a': `file` must be a path"),
    ({"a b": {}}, "list name 'a b' is invalid"),
])
def test_config_shape_errors_name_the_list(section: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ListStore.from_config(section)
    assert fragment in str(info.value)


# --- CSV ----------------------------------------------------------------------------------------

def write(tmp_path: Path, text: str, name: str = "ips.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_all_columns_relative_to_base_dir(tmp_path: Path) -> None:
    write(tmp_path, "value,expires,reason\n"
                    "203.0.113.1,,proxy\n"
                    "\n"
                    " 203.0.113.2 , 2030-01-01T00:00:00Z , botnet \n"
                    "42,1000,\n")
    store = ListStore.from_config({"ips": {"reason": "r", "values": ["10.0.0.1"],
                                           "file": "ips.csv"}}, tmp_path)
    assert store.entries("ips") == [
        ListEntry("10.0.0.1", None, ""), ListEntry("203.0.113.1", None, "proxy"),
        ListEntry("203.0.113.2", T2030, "botnet"), ListEntry("42", 1000, "")]
    assert store.contains("ips", 42, 999) and not store.contains("ips", 42, 1000)


@pytest.mark.parametrize("text", ["value\nx\n", "Value\nx\n", "reason,value\nr,x\n",
                                  "\n\nvalue,expires\nx,\n"])
def test_csv_header_variants(tmp_path: Path, text: str) -> None:
    store = store_with()
    assert store.load_csv("l", write(tmp_path, text)) == 1
    assert store.contains("l", "x", 0)


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "the file is empty"),
    ("\n\n", "the file is empty"),
    ("ip\n1.2.3.4\n", "row 1: header"),
    ("value,value\nx,y\n", "row 1: header"),
    ("value,expires,reason,extra\nx,,,\n", "row 1: header"),
    ("value,reason\nx,a,b\n", "row 2: expected 2 cells"),
    ("value,expires\nok,\nx\n", "row 3: expected 2 cells"),
    ("value,expires\n,5\n", "row 2: empty value"),
    ("value,expires\nx,tomorrow\n", "row 2: 'tomorrow' is not an ISO-8601 time"),
    ("value,expires\nx,2030-01-01T00:00:00\n", "row 2: '2030-01-01T00:00:00' has no UTC"),
    ('value\n"unterminated\n', "row 2: malformed CSV"),
    ('value\n"a"b\n', "row 2: malformed CSV"),
])
def test_malformed_csv_names_the_row(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        ListStore.from_config({"ips": {"file": "ips.csv"}}, tmp_path)
    message = str(info.value)
    assert fragment in message
    assert "list 'ips'" in message and str(path) in message


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "ips.csv").write_bytes(b"value\n\xff\xfe\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        ListStore.from_config({"ips": {"file": "ips.csv"}}, tmp_path)


def test_missing_csv_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"list 'ips', file .*nope\.csv.*cannot read"):
        ListStore.from_config({"ips": {"file": "nope.csv"}}, tmp_path)
    with pytest.raises(ListError, match="cannot read"):
        store_with().load_csv("l", tmp_path / "nope.csv")


def test_a_bad_csv_changes_nothing(tmp_path: Path) -> None:
    store = store_with("kept")
    with pytest.raises(ListError, match="row 3"):
        store.load_csv("l", write(tmp_path, "value,expires\na,\nb,bad\n"))
    assert [e.value for e in store.entries("l")] == ["kept"]
