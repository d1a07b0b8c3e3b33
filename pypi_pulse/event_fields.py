"""The event schema (`pypi_pulse.events.Download`) as the readers that use only part of it need it.

The dataflow decodes only the fields its rules read (`pypi_pulse.rules.READ_FIELDS`), into frozen structs that
cost no garbage-collector tracking, and Arrow's JSON reader takes an explicit schema of the same fields; the file
replay rebuilds nested rows from flattened CSV/Parquet columns; the BigQuery reader selects flat columns and
rebuilds the nested row from them. Each of these is derived here from the one declaration of the event, so that
a field added to or retyped in `Download` reaches every reader (and a reader cannot name a field it lacks).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from functools import cache
from typing import Optional, Union

import msgspec

from pypi_pulse.events import Download


def _record(tp) -> Optional[type]:
    """The struct type of an `Optional[SomeStruct]` field, None for a plain value."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return _record(inner[0])
    return None


def _fields(struct: type) -> list:
    return list(msgspec.structs.fields(struct))


@cache
def _tree(struct: type = Download) -> dict:
    return {f.name: (_tree(sub) if (sub := _record(f.type)) is not None else None) for f in _fields(struct)}


def field_tree() -> dict:
    """{field: None for a value, or the same kind of dict for a record}, in declaration order."""
    return _tree()


def paths(tree: Optional[dict] = None, prefix: str = "") -> list[str]:
    """Every value's dotted path, in declaration order."""
    out = []
    for name, sub in (field_tree() if tree is None else tree).items():
        out += [f"{prefix}{name}"] if sub is None else paths(sub, f"{prefix}{name}.")
    return out


def _wanted(selected: Iterable[str]) -> dict:
    """The selected dotted paths as a tree; every path must exist in `Download`."""
    known = set(paths())
    tree: dict = {}
    for path in selected:
        if path not in known:
            raise ValueError(f"{path!r} is not a field of pypi_pulse.events.Download")
        node = tree
        *records, leaf = path.split(".")
        for r in records:
            node = node.setdefault(r, {})
        node[leaf] = None
    return tree


def reader_struct(selected: Iterable[str], name: str = "Event") -> type:
    """A msgspec struct holding only `selected` fields of `Download`, with their declared types (a value of
    another type is a decode error, as with `Download`); frozen and untracked by the GC, records hashable with a
    cached hash so that distinct records can key dicts. Other fields are skipped unread."""
    return _reader(Download, _wanted(selected), name, top=True)


def _struct(f) -> type:
    """The struct type of a field selected by its sub-fields (`_wanted` gives sub-fields only to records)."""
    sub = _record(f.type)
    if sub is None:
        raise ValueError(f"{f.name!r} is not a record: it has no fields to select")
    return sub


def _reader(struct: type, wanted: dict, name: str, top: bool = False) -> type:
    fields = []
    for f in _fields(struct):
        if f.name not in wanted:
            continue
        sub = _record(f.type)
        if wanted[f.name] is None:
            if sub is not None:
                raise ValueError(f"{f.name!r} is a record: select its fields")
            fields.append((f.name, f.type, None))
        else:
            fields.append((f.name, Optional[_reader(_struct(f), wanted[f.name], f"{name}_{f.name}")], None))
    return msgspec.defstruct(name, fields, frozen=True, gc=False, cache_hash=not top, module=__name__)


def arrow_schema(selected: Iterable[str]):
    """An Arrow schema of `selected` fields for pyarrow's JSON reader. A timestamp is read as text: the columnar
    tier takes only BigQuery's text form (numbers send a batch to the msgspec tier)."""
    import pyarrow as pa

    def value_type(tp):
        args = set(typing.get_args(tp)) or {tp}
        if str in args:
            return pa.string()
        if args - {type(None)} == {bool}:
            return pa.bool_()
        raise TypeError(f"no Arrow type for {tp!r}")

    def build(struct: type, wanted: dict) -> list:
        out = []
        for f in _fields(struct):
            if f.name in wanted:
                sub = wanted[f.name]
                out.append((f.name, value_type(f.type) if sub is None else pa.struct(build(_struct(f), sub))))
        return out

    return pa.schema(build(Download, _wanted(selected)))


def flat_name(path: str) -> str:
    """A dotted path as a flat column name (`details.installer.name` -> `details_installer_name`), as BigQuery's
    flattened exports and pypi-pulse's Parquet export name them."""
    return path.replace(".", "_")


def nester(selected: Iterable[str]) -> Callable[..., dict]:
    """A function from the values of `selected` (in that order) to the nested row: top-level fields always
    present (a record with no value set is null), fields inside records only when set, as BigQuery's JSON
    export writes them. Orders follow `Download`. It runs once per BigQuery result row, so it is compiled from
    the schema into straight-line code (a generic walk took 2.5 times as long)."""
    selected = list(selected)
    position = {p: i for i, p in enumerate(selected)}
    wanted = _wanted(selected)
    lines: list[str] = []
    counter = iter(range(1 << 30))

    def record(tree: dict, schema: dict, prefix: str, indent: str) -> str:
        """Emit code that builds one record; returns the name of the variable holding it."""
        var = f"r{next(counter)}"
        lines.append(f"{indent}{var} = {{}}")
        for name in (n for n in schema if n in tree):
            if tree[name] is None:
                v = f"v[{position[prefix + name]}]"
                lines.append(f"{indent}if {v} is not None: {var}[{name!r}] = {v}")
            else:
                sub = record(tree[name], schema[name], f"{prefix}{name}.", indent)
                lines.append(f"{indent}if {sub}: {var}[{name!r}] = {sub}")
        return var

    items = []
    for name in (n for n in field_tree() if n in wanted):
        if wanted[name] is None:
            items.append(f"{name!r}: v[{position[name]}]")
        else:
            items.append(f"{name!r}: {record(wanted[name], field_tree()[name], name + '.', '    ')} or None")
    source = "def nest(*v):\n" + "\n".join(lines) + f"\n    return {{{', '.join(items)}}}\n"
    namespace: dict = {}
    exec(compile(source, f"<nester of {len(selected)} fields>", "exec"), namespace)  # noqa: S102 - our own schema
    return namespace["nest"]
