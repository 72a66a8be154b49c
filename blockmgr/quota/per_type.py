"""Per-volume-type quota resources: ``volumes_<type>``, ``gigabytes_<type>``, ``snapshots_<type>``.

As in Cinder, a volume of type ``gold`` counts in ``volumes`` and in ``volumes_gold``, its
size in ``gigabytes`` and ``gigabytes_gold``; a snapshot of it in ``snapshots`` and
``snapshots_gold`` (and its size in both gigabytes, unless ``[quota] no_snapshot_gb_quota``).
A per-type resource is named after the type's *name*, exists while the type does, and its
limit is -1 (unlimited) unless an administrator sets one.

This module is the one place that turns a type name into those resources. Callers do not
build per-type deltas themselves: they pass the volume's type id to the engine's ``reserve``
/ ``consume`` (``volume_type_id=`` for one type, ``by_type=`` for several), which resolves
the name once and expands the deltas here.
"""

from __future__ import annotations

from typing import Iterable, Mapping

#: The project-wide resources that have a per-type twin, in display order.
BASES = ("volumes", "snapshots", "gigabytes")
#: The per-type limit a project has without an override: unlimited.
DEFAULT_LIMIT = -1
#: Longest resource name the quota tables store (``quotas.resource`` / ``quota_usages``).
MAX_RESOURCE_NAME = 255


def resource_name(base: str, type_name: str) -> str | None:
    """``<base>_<type_name>``, or None when the name would not fit the quota tables (a type
    name over 245 characters): such a type has no per-type quota, it is only counted in the
    project-wide resources."""
    name = "%s_%s" % (base, type_name)
    return name if len(name) <= MAX_RESOURCE_NAME else None


def resources_of(type_name: str) -> list[str]:
    """The per-type resources of one type, in display order (none for a too-long name)."""
    names = [resource_name(base, type_name) for base in BASES]
    return [n for n in names if n is not None]


def resources_of_types(type_names: Iterable[str]) -> list[str]:
    """The per-type resources of several types: by type name, then in display order."""
    return [r for name in sorted(set(type_names)) for r in resources_of(name)]


def parse(resource: str) -> tuple[str, str] | None:
    """``(base, type_name)`` of a per-type resource name, else None.

    Unambiguous whatever the type name contains: no base is a prefix of another, and the
    project-wide names (``volumes``, ``per_volume_gigabytes``, ...) have no ``<base>_``
    prefix.
    """
    if not isinstance(resource, str):
        return None
    for base in BASES:
        prefix = base + "_"
        if resource.startswith(prefix) and len(resource) > len(prefix):
            return base, resource[len(prefix):]
    return None


def is_per_type(resource: str) -> bool:
    return parse(resource) is not None


def expand(deltas: Mapping[str, int], type_name: str | None) -> dict[str, int]:
    """``deltas`` plus, for each of ``volumes``/``snapshots``/``gigabytes`` among them, the
    same delta on that resource of type ``type_name`` (None: no type, nothing added).

    >>> expand({"volumes": 1, "gigabytes": 10, "groups": 1}, "gold")
    {'volumes': 1, 'gigabytes': 10, 'groups': 1, 'volumes_gold': 1, 'gigabytes_gold': 10}
    """
    result = dict(deltas)
    if type_name is None:
        return result
    for base in BASES:
        delta = deltas.get(base)
        name = resource_name(base, type_name)
        if delta and name is not None:
            result[name] = result.get(name, 0) + delta
    return result


def add(total: dict[str, int], deltas: Mapping[str, int]) -> dict[str, int]:
    """Add ``deltas`` into ``total`` (in place) and return it."""
    for resource, delta in deltas.items():
        total[resource] = total.get(resource, 0) + delta
    return total


def add_for_type(by_type: dict, volume_type_id: str | None, **deltas: int) -> dict:
    """Accumulate the deltas of one volume (or snapshot) of type ``volume_type_id`` into a
    ``by_type`` mapping (``{type id or None: {resource: delta}}``) for ``reserve`` /
    ``consume``'s ``by_type=``; returns ``by_type``. What a caller uses when one operation
    counts volumes of several types (a group snapshot, a group created from a source)."""
    add(by_type.setdefault(volume_type_id, {}), deltas)
    return by_type
