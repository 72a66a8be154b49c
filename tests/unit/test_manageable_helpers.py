"""The shared manage-existing helpers: reference parsing, rounding, sorting and paging."""

import pytest

from blockmgr import exception
from blockmgr.drivers import manageable

GiB = manageable.GiB


@pytest.mark.parametrize("size, expected", [(0, 0), (1, 1), (GiB, 1), (GiB + 1, 2),
                                            (3 * GiB - 1, 3)])
def test_size_rounds_up(size, expected):
    assert manageable.size_in_gib_rounded_up(size) == expected


def test_negative_size_is_invalid():
    with pytest.raises(exception.InvalidInput):
        manageable.size_in_gib_rounded_up(-1)


@pytest.mark.parametrize("ref, fragment", [
    (None, "must be a dict"), ("x", "must be a dict"), ({}, "missing 'source-name'"),
    ({"source-id": "x"}, "keys given: source-id"), ({"source-name": ""}, "non-empty"),
    ({"source-name": 3}, "non-empty string"), ({"source-name": "-rf"}, "not a valid"),
    ({"source-name": "../etc"}, "not a valid"), ({"source-name": "a/b"}, "not a valid"),
    ({"source-name": ".."}, "not a valid"),
])
def test_bad_references_say_what_is_wrong(ref, fragment):
    with pytest.raises(exception.ManageExistingInvalidReference, match=fragment):
        manageable.parse_reference(ref)


def test_reference_keys_in_order_of_preference():
    assert manageable.parse_reference({"source-id": "7", "source-name": "n"},
                                      ("source-name", "source-id")) == ("source-name", "n")
    assert manageable.parse_reference({"source-id": "7"}, ("source-name", "source-id")) == (
        "source-id", "7")


def _entries():
    return [manageable.manageable_entry({"source-name": n}, s)
            for n, s in (("b", 2), ("a", 3), ("c", 1), ("d", 2))]


def test_sort_by_several_keys_then_page():
    names = lambda entries: [e["reference"]["source-name"] for e in entries]  # noqa: E731
    entries = _entries()
    assert names(manageable.sort_and_page(entries, None, None, None, ["size", "identifier"],
                                          ["desc", "asc"])) == ["a", "b", "d", "c"]
    assert names(manageable.sort_and_page(entries, None, None, None, None, None)) == [
        "a", "b", "c", "d"]
    assert names(manageable.sort_and_page(entries, {"source-name": "b"}, 1, 1, None,
                                          None)) == ["d"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"sort_keys": ["name"]}, "unknown sort key"), ({"sort_dirs": ["up"]}, "direction"),
    ({"marker": {"source-name": "zz"}}, "marker"), ({"offset": -1}, "offset"),
    ({"limit": -1}, "limit"),
])
def test_bad_listing_arguments_are_invalid_input(kwargs, fragment):
    args = {"marker": None, "limit": None, "offset": None, "sort_keys": None,
            "sort_dirs": None, **kwargs}
    with pytest.raises(exception.InvalidInput, match=fragment):
        manageable.sort_and_page(_entries(), **args)


def test_entry_is_safe_exactly_without_a_reason():
    assert manageable.manageable_entry({"source-name": "x"}, 1)["safe_to_manage"] is True
    entry = manageable.manageable_entry({"source-name": "x"}, 1, cinder_id="id",
                                        reason_not_safe="already managed",
                                        source_reference={"source-name": "v"})
    assert entry["safe_to_manage"] is False and entry["source_reference"] == {
        "source-name": "v"}
