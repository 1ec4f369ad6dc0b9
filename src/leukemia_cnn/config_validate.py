"""Checking a config against the schema (:mod:`leukemia_cnn.config_schema`).

pydantic does the work: types, ranges, unknown keys (``extra="forbid"``) and the rules over
several keys. This module turns its first error into the one line a user reads (the key, the
bad value and what is allowed, or the nearest valid key): keys and defaults come from the
models' fields, the words from each knob's JSON Schema. The one check pydantic does not make:
a key that is not ``late`` must be in a params file (every knob has a default, for the files
that lack a late one), read from the validated model's ``model_fields_set``.
"""

from __future__ import annotations

import difflib
import functools
import operator
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from omegaconf import OmegaConf
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from leukemia_cnn.config_schema import DATA_OPTIONS, Config
from leukemia_cnn.config_types import invalid
from leukemia_cnn.errors import ConfigError


def _fields(annotation: Any) -> dict[str, FieldInfo]:
    """The fields of a group's type (the options of ``data``: merged, the first's first);
    none for a knob."""
    fields: dict[str, FieldInfo] = {}
    for option in get_args(annotation) if get_origin(annotation) is Union else [annotation]:
        model = get_args(option)[0] if get_origin(option) is Annotated else option
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, info in model.model_fields.items():
                fields.setdefault(name, info)
    return fields


def field_of(key: str) -> FieldInfo:
    """The field of a dotted key (a group or a knob); unknown keys are refused."""
    fields = Config.model_fields
    for part in key.split("."):
        if part not in fields:
            raise unknown_key(key)
        info = fields[part]
        fields = _fields(info.annotation)
    return info


@functools.cache
def _adapter(key: str) -> TypeAdapter:
    """pydantic's validator of a dotted key (``""``: the whole config)."""
    info = field_of(key) if key else None
    return TypeAdapter(Annotated[info.annotation, info] if info else Config)


def node_of(key: str) -> dict:
    """The JSON Schema of a knob: its type, range and the words of :func:`setting`."""
    return _adapter(key).json_schema()


@functools.cache
def all_keys(prefix: str = "") -> list[str]:
    """Every dotted key of the schema (groups and leaves), e.g. ``train``, ``train.epochs``."""
    fields = _fields(field_of(prefix[:-1]).annotation) if prefix else Config.model_fields
    keys: list[str] = []
    for name, info in fields.items():
        keys.append(prefix + name)
        if _fields(info.annotation):
            keys += all_keys(f"{prefix}{name}.")
    return keys


def _late(info: FieldInfo) -> bool:
    return bool((info.json_schema_extra or {}).get("late"))


def is_late(key: str) -> bool:
    """Whether a params file may lack ``key`` (the knob came after the first runs)."""
    return _late(field_of(key))


def default_of(key: str) -> Any:
    """The schema's default of a dotted key (``"train.lr_schedule"`` -> ``"constant"``)."""
    return plain(field_of(key).get_default(call_default_factory=True))


def is_group(key: str) -> bool:
    """Whether a dotted key is a group of knobs rather than a knob."""
    return bool(_fields(field_of(key).annotation))


BOUND_NAMES = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum",
               "lt": "exclusiveMaximum"}


def bounds(key: str) -> dict[str, Any]:
    """The numeric range of a knob: ``ge``/``gt``/``le``/``lt`` (``None`` where unbounded)."""
    found = {bound: getattr(item, bound) for item in field_of(key).metadata
             for bound in BOUND_NAMES if hasattr(item, bound)}
    return {bound: found.get(bound) for bound in BOUND_NAMES}


def _range_words(node: dict) -> str:
    ge, gt, le, lt = (node.get(name) for name in BOUND_NAMES.values())
    if ge is not None and le is not None:
        return f" from {ge} to {le}"
    if gt is not None and lt is not None:
        return f" strictly between {gt} and {lt}"
    if ge is not None and lt is not None:
        return f" in [{ge}, {lt})"
    if gt is not None and le is not None:
        return f" in ({gt}, {le}]"
    words = [f"{op} {value}" for op, value in {">=": ge, ">": gt, "<=": le, "<": lt}.items()
             if value is not None]
    return f" {words[0]}" if words else ""


def _words(node: dict, none: str | None = None) -> str:
    if "anyOf" in node:
        rest = [member for member in node["anyOf"] if member.get("type") != "null"]
        inner = " or ".join(_words(member) for member in rest)
        if len(rest) == len(node["anyOf"]):
            return inner
        return f"null ({none}) or {inner}" if none else f"null or {inner}"
    if "enum" in node or "const" in node:
        return ", ".join(str(choice) for choice in node.get("enum", [node.get("const")]))
    kind = node.get("type")
    if kind == "array":
        return f"a list of {_words(node['items'])}"
    if kind == "object":
        return f"a mapping of names to {_words(next(iter(node['patternProperties'].values())))}"
    base = {"boolean": "true or false", "integer": "an integer", "number": "a number",
            "string": "a non-empty string"}.get(kind, str(kind))
    if kind in ("integer", "number"):
        base += _range_words(node)
    return base


def describe(key: str) -> str:
    """What a knob allows, in words (its ``allowed`` text, or made from its type and range)."""
    if is_group(key):
        return f"a mapping of the keys of `{key}`"
    node = node_of(key)
    return node.get("allowed") or _words(node, node.get("none"))


def unknown_key(key: str, siblings: Iterable[str] = ()) -> ConfigError:
    """The error for a key the schema does not have, with the nearest valid key."""
    near = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
    hint = (f"did you mean `{near[0]}`?" if near
            else f"valid keys here: {', '.join(siblings) or ', '.join(Config.model_fields)}")
    return ConfigError(f"config key `{key}` is unknown (not in conf/); {hint}")


def _unknown(loc: list, tags: list[str]) -> ConfigError:
    """An ``extra_forbidden`` error: a key of the other data option, or an unknown key."""
    key = ".".join(loc)
    parent = ".".join(loc[:-1])
    others = [option.OPTION for option in DATA_OPTIONS if loc[-1] in option.model_fields]
    if tags and parent == "data" and others:
        return ConfigError(f"config key `{key}` belongs to {others[0]}, not to {tags[-1]} (the "
                           f"keys of `{parent}` say which option it is); select {others[0]} or "
                           "remove the key")
    siblings = all_keys(f"{parent}.") if parent else list(Config.model_fields)
    return unknown_key(key, [k for k in siblings if k.count(".") == key.count(".")])


def _first_error(error: ValidationError, values: Mapping, prefix: str) -> ConfigError:
    """pydantic's first error as one line: the knob's key, its value and what it allows."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    # Union tags (`data=kaggle`) and list/dict items are not keys: the knob is the whole value.
    tags = [part for part in first["loc"] if isinstance(part, str) and "=" in part]
    loc = [part for part in first["loc"] if isinstance(part, str) and "=" not in part]
    if first["type"] == "extra_forbidden":
        return _unknown([*prefix.split(".")[:-1], *loc] if prefix else loc, tags)
    while loc and prefix + ".".join(loc) not in all_keys():
        loc.pop()
    key = prefix + ".".join(loc)
    return invalid(key, functools.reduce(operator.getitem, loc, values), describe(key))


def _refuse_missing(model: BaseModel, prefix: str) -> None:
    """A key that is not late must be given; a group given in part is checked inside."""
    for name, info in type(model).model_fields.items():
        if name not in model.model_fields_set:
            if not _late(info):
                raise ConfigError(f"config key `{prefix}{name}` is missing; add it to conf/ "
                                  "(see conf/config.yaml)")
        elif isinstance(getattr(model, name), BaseModel):
            _refuse_missing(getattr(model, name), f"{prefix}{name}.")


def plain(values: Any) -> Any:
    """A config, or one group of it (a ``DictConfig`` or a model), as plain Python values."""
    if OmegaConf.is_config(values):
        return OmegaConf.to_container(values, resolve=True)
    if isinstance(values, BaseModel):
        return values.model_dump()
    return values


def validate_config(values: Any) -> Config:
    """Check a composed config (a ``DictConfig``, a mapping, or a :class:`Config`) against the
    schema before any work starts.

    Returns
    -------
    Config
        The validated, typed config, with the schema's default for each late knob the config
        lacks (a params file written before the knob existed).

    Raises
    ------
    ConfigError
        Naming the first unknown, missing or invalid key, its value and what is allowed.
    """
    return check_section("", values)


def check_section(name: str, values: Any) -> Any:
    """One group of the config (``"validation"``, ``"split"``, ...; ``""``: the whole config)
    checked by the schema: its typed model, with the defaults of missing late knobs filled.
    Errors name ``<name>.<key>``."""
    if name and name not in Config.model_fields:
        raise unknown_key(name)
    plain_values = plain(values)
    prefix = f"{name}." if name else ""
    if not isinstance(plain_values, Mapping):
        raise invalid(name or "config", plain_values,
                      f"a mapping of the keys of `{name or 'conf/'}`")
    try:
        checked = _adapter(name).validate_python(plain_values)
    except ValidationError as error:
        raise _first_error(error, plain_values, prefix) from None
    _refuse_missing(checked, prefix)
    return checked
