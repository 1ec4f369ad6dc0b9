"""Checking a config against the schema (:mod:`leukemia_cnn.config_schema`): pydantic does
the types and ranges; this module refuses unknown and missing keys first (with the nearest
valid key), turns pydantic's first error into one line naming the key, the bad value and what
is allowed, and walks the schema for :mod:`leukemia_cnn.config` (keys, defaults, ranges)."""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from leukemia_cnn.config_schema import Config
from leukemia_cnn.config_types import invalid
from leukemia_cnn.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Walking the schema
# --------------------------------------------------------------------------------------------

def _members(tp: Any) -> tuple[Any, ...]:
    """The types of a (possibly ``Annotated``) union, each without its annotation."""
    if typing.get_origin(tp) is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(m for arg in typing.get_args(tp) for m in _members(arg))
    return (tp,)


def _is_schema(tp: Any) -> bool:
    return all(isinstance(m, type) and issubclass(m, BaseModel) for m in _members(tp))


def _option(tp: Any, values: Any) -> type[BaseModel]:
    """The model of ``tp``, or of the union ``tp`` the one whose keys ``values`` matches best."""
    options = _members(tp)
    keys = set(values) if isinstance(values, Mapping) else set()
    return max(options, key=lambda cls: (len(keys & set(cls.model_fields)), -options.index(cls)))


def _late(info: FieldInfo) -> bool:
    return bool((info.json_schema_extra or {}).get("late"))


@functools.cache
def all_keys(cls: Any = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (groups and leaves), e.g. ``train``, ``train.epochs``."""
    keys: list[str] = []
    for option in _members(cls):
        for name, info in option.model_fields.items():
            key = f"{prefix}{name}"
            keys += [key] if key not in keys else []
            if _is_schema(info.annotation):
                keys += [k for k in all_keys(info.annotation, f"{key}.") if k not in keys]
    return keys


def schema_field(key: str) -> tuple[FieldInfo, Any]:
    """The pydantic field of a dotted key and its type (see :func:`bounds`, :func:`is_late`)."""
    tp: Any = Config
    for part in key.split("."):
        found = [m.model_fields[part] for m in _members(tp) if _is_schema(m)
                 and part in m.model_fields]
        if not found:
            raise unknown_key(key)
        info = found[0]
        tp = info.annotation
    return info, tp


def is_late(key: str) -> bool:
    """Whether a params file may lack ``key`` (the knob came after the first runs)."""
    return _late(schema_field(key)[0])


def _bounds_of(metadata: Iterable[Any]) -> dict[str, Any]:
    found = {}
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[int, Field(ge=1)]
            found.update(_bounds_of(item.metadata))
        for bound in ("ge", "gt", "le", "lt"):
            if getattr(item, bound, None) is not None:
                found[bound] = getattr(item, bound)
    return found


def _item_bounds(tp: Any) -> dict[str, Any]:
    if typing.get_origin(tp) is typing.Annotated:
        base, *metadata = typing.get_args(tp)
        return {**_item_bounds(base), **_bounds_of(metadata)}
    args = typing.get_args(tp)
    return _item_bounds(args[-1]) if typing.get_origin(tp) in (list, dict) and args else {}


def bounds(key: str) -> dict[str, Any]:
    """The numeric range of a knob, or of each item of a list knob: ``ge``/``gt``/``le``/``lt``
    (``None`` where unbounded)."""
    info, tp = schema_field(key)
    found = {**_item_bounds(tp), **_bounds_of(info.metadata)}
    return {bound: found.get(bound) for bound in ("ge", "gt", "le", "lt")}


def default_of(key: str) -> Any:
    """The schema's default of a dotted key (``"train.lr_schedule"`` -> ``"constant"``)."""
    made = schema_field(key)[0].get_default(call_default_factory=True)
    return made.model_dump() if isinstance(made, BaseModel) else made


def late_defaults(cls: Any = Config, prefix: str = "") -> dict[str, Any]:
    """Every ``late=True`` knob with its default (see ``config.LATE_KNOBS``)."""
    late = {}
    for option in _members(cls):
        for name, info in option.model_fields.items():
            if _is_schema(info.annotation):
                late.update(late_defaults(info.annotation, f"{prefix}{name}."))
            elif _late(info):
                late[f"{prefix}{name}"] = default_of(f"{prefix}{name}")
    return late


# --------------------------------------------------------------------------------------------
# What a knob allows, in words
# --------------------------------------------------------------------------------------------

def _range_words(bound: Mapping) -> str:
    ge, gt, le, lt = (bound.get(k) for k in ("ge", "gt", "le", "lt"))
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


def _words(tp: Any, bound: Mapping, none: str | None = None) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *metadata = typing.get_args(tp)
        return _words(base, {**bound, **_bounds_of(metadata)}, none)
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        inner = " or ".join(_words(arg, bound) for arg in rest)
        if len(rest) == len(typing.get_args(tp)):
            return inner
        return f"null ({none}) or {inner}" if none else f"null or {inner}"
    if origin is Literal:
        return ", ".join(str(choice) for choice in typing.get_args(tp))
    if origin is list:
        return f"a list of {_words(typing.get_args(tp)[0], bound)}"
    if origin is dict:
        return f"a mapping of names to {_words(typing.get_args(tp)[1], bound)}"
    base = {bool: "true or false", int: "an integer", float: "a number",
            str: "a non-empty string"}.get(tp, str(tp))
    return base + (_range_words(bound) if tp in (int, float) else "")


def describe(key: str) -> str:
    """What a knob allows, in words (its ``allowed`` text, or made from its type and range)."""
    info, tp = schema_field(key)
    extra = info.json_schema_extra or {}
    return extra.get("allowed") or _words(tp, _bounds_of(info.metadata), extra.get("none"))


# --------------------------------------------------------------------------------------------
# Checking a config against the schema
# --------------------------------------------------------------------------------------------

def unknown_key(key: str, siblings: Iterable[str] = ()) -> ConfigError:
    """The error for a key the schema does not have, with the nearest valid key."""
    near = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
    if near:
        hint = f"did you mean `{near[0]}`?"
    else:
        hint = f"valid keys here: {', '.join(siblings) or ', '.join(Config.model_fields)}"
    return ConfigError(f"config key `{key}` is unknown (not in conf/); {hint}")


def _check_keys(tp: Any, values: Any, prefix: str) -> None:
    """Refuse an unknown or missing key of ``values`` (a group of type ``tp``), depth first."""
    if not isinstance(values, Mapping):
        raise invalid(prefix[:-1], values, f"a mapping of the keys of `{prefix[:-1]}` (see conf/)")
    cls = _option(tp, values)
    for key in values:
        if key not in cls.model_fields:
            other = [o for o in _members(tp) if key in o.model_fields]
            if other:
                raise ConfigError(f"config key `{prefix}{key}` belongs to {other[0].OPTION}, "
                                  f"not to {cls.OPTION} (the keys of `{prefix[:-1]}` say which "
                                  f"option it is); select {other[0].OPTION} or remove the key")
            raise unknown_key(f"{prefix}{key}", (f"{prefix}{name}" for name in cls.model_fields))
    for name, info in cls.model_fields.items():
        if name not in values and not _late(info):
            raise ConfigError(f"config key `{prefix}{name}` is missing; add it to conf/ "
                              "(see conf/config.yaml)")
        if name in values and _is_schema(info.annotation):
            _check_keys(info.annotation, values[name], f"{prefix}{name}.")


def _first_error(error: ValidationError, values: Mapping, prefix: str) -> ConfigError:
    """pydantic's first error as one line: the knob's key, its value and what it allows."""
    # Union tags (`data=kaggle`) and list/dict items are not keys: the knob is the whole value.
    loc = [part for part in error.errors()[0]["loc"] if isinstance(part, str) and "=" not in part]
    known = all_keys()
    while loc and prefix + ".".join(loc) not in known:
        loc.pop()
    value: Any = values
    for part in loc:
        value = value[part]
    return invalid(prefix + ".".join(loc), value, describe(prefix + ".".join(loc)))


def _given(checked: Any, values: Any) -> Any:
    """``checked`` (the model's dump, defaults filled) with the values as given: a float knob
    set to 1 stays 1, so the flattened config (and a run's config id) does not change."""
    if isinstance(checked, dict) and isinstance(values, Mapping):
        return {key: _given(value, values[key]) if key in values else value
                for key, value in checked.items()}
    return values


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


def _check(tp: Any, values: Any, prefix: str) -> dict[str, Any]:
    _check_keys(tp, values, prefix)
    try:
        checked = _adapter(tp).validate_python(values)
    except ValidationError as error:
        raise _first_error(error, values, prefix) from None
    return _given(checked.model_dump(), values)


def _plain(values: Any) -> Any:
    if OmegaConf.is_config(values):
        return OmegaConf.to_container(values, resolve=True)
    if isinstance(values, Mapping):
        return {k: _plain(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return [_plain(v) for v in values]
    return values


def validate_config(cfg: DictConfig | Mapping) -> DictConfig:
    """Check a composed config against the schema before any work starts.

    Returns
    -------
    DictConfig
        The same config as a plain ``DictConfig``, with the schema's default for each knob
        the config lacks (a params file written before the knob existed).

    Raises
    ------
    ConfigError
        Naming the first unknown, missing or invalid key, its value and what is allowed.
    """
    return OmegaConf.create(_check(Config, _plain(cfg), ""))


def check_section(name: str, values: DictConfig | Mapping) -> dict[str, Any]:
    """One group of the config (``"validation"``, ``"split"``, ...) checked by the schema.

    For functions that take a group's values rather than a whole config (their
    ``ConfigError`` names ``<name>.<key>``). Returns the values as plain Python, with the
    defaults of missing late knobs filled.
    """
    if name not in Config.model_fields:
        raise unknown_key(name)
    return _check(Config.model_fields[name].annotation, _plain(values), f"{name}.")
