"""Build models from stored JSON without validating them again: the read side of the records.

Records are validated when they are written (:func:`projcache.models.validate`),
and a stored value's CRC vouches for its bytes, so a read can build the model
straight from the decoded JSON, several times cheaper than ``model_validate_json``.
:func:`from_stored_json` does that for a payload of exactly the shape the model
writes and falls back to pydantic for anything else.  Nothing here imports the
models: they import this module (and re-export :func:`from_stored_json`).

A little over 400 lines on purpose: the per-record loader and the batch loader
(its C-loop body, the pydantic-core builder with its probe) make one read path
whose shortcuts must agree with each other and with validation, so they stay
side by side.
"""

from __future__ import annotations

import functools
import sys
from collections import deque
from datetime import datetime, timezone
from itertools import repeat
from operator import attrgetter, itemgetter, setitem
from typing import (
    Annotated,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

import orjson
from pydantic import BaseModel
from pydantic_core import SchemaValidator, core_schema

__all__ = [
    "as_utc",
    "from_stored_json",
    "parse_utc",
    "stored_json_list_loader",
    "stored_json_loader",
]

M = TypeVar("M", bound=BaseModel)


def as_utc(value: datetime) -> datetime:
    """Read a naive datetime as UTC (SkillMeat's TOML often omits the offset)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


@functools.lru_cache(maxsize=256)
def parse_utc(text: str) -> datetime:
    """Parse a datetime as pydantic writes it (``...Z`` or an offset); naive means UTC."""
    # Cached: every source read in one refresh shares that refresh's read time.
    # fromisoformat before Python 3.11 does not take the "Z" pydantic writes.
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return as_utc(value)


def _read_utc(text: str) -> datetime:
    """:func:`parse_utc` without its cache: a read meets each stored time once.

    (Cycling through more records than the cache holds would only add misses.)
    """
    try:
        value = datetime.fromisoformat(text)  # Python 3.11+ reads the "Z" itself
    except ValueError:
        if not text.endswith("Z"):
            raise
        value = datetime.fromisoformat(text[:-1] + "+00:00")
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _read_optional_utc(text: Optional[str]) -> Optional[datetime]:
    """:func:`_read_utc` of an optional field in one call (the listings' per-record cost)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        if not text.endswith("Z"):
            raise
        value = datetime.fromisoformat(text[:-1] + "+00:00")
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


_FROMISO_READS_Z = sys.version_info >= (3, 11)
_Convert = Callable[[Any], Any]
_SET_DICT = object.__setattr__
_NEW = object.__new__
# BaseModel's slots, set through their descriptors (a little cheaper than setattr).
_SET_FIELDS = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def _converter(annotation: Any) -> Optional[_Convert]:
    """How to turn a field's JSON value into what validation would give (``None``: as is).

    Only datetimes and nested models differ from their JSON form; strings,
    numbers, booleans, literals, lists of those and free-form dicts are kept.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        return _converter(get_args(annotation)[0])
    if annotation is datetime:
        return _read_utc
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        model: type[BaseModel] = annotation
        return lambda value: _trusted(model, value)
    if origin is Union:
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            if _converter(inner[0]) is _read_utc:
                return _read_optional_utc
            convert = _converter(inner[0])
            if convert is not None:
                fn = convert
                return lambda value: None if value is None else fn(value)
            return None
        if any(_converter(arg) is not None for arg in inner):
            raise TypeError(f"no trusted reader for {annotation!r}")
        return None
    if origin in (list, List):
        convert = _converter(get_args(annotation)[0])
        if convert is not None:
            item = convert
            return lambda value: [item(v) for v in value]
        return None
    if origin in (dict, Dict):
        if _converter(get_args(annotation)[1]) is not None:
            raise TypeError(f"no trusted reader for {annotation!r}")
        return None
    return None


class _Plan:
    """What :func:`_trusted` needs to know about one model, worked out once."""

    __slots__ = ("converters", "fields", "order")

    def __init__(self, model: type[BaseModel]):
        self.fields = frozenset(model.model_fields)
        # The keys in the order model_dump_json writes them: comparing a tuple of
        # the decoded keys with this is cheaper than comparing sets.
        self.order = tuple(model.model_fields)
        self.converters = tuple(
            (name, convert)
            for name, info in model.model_fields.items()
            if (convert := _converter(info.annotation)) is not None
        )


@functools.cache
def _plan(model: type[BaseModel]) -> _Plan:
    return _Plan(model)


def _in_order(raw: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """``raw``'s items in the model's field order (what validation gives: the order
    of ``__dict__`` is the order ``model_dump`` and ``model_dump_json`` write)."""
    return {name: raw[name] for name in order}


class _NotTrusted(Exception):
    """A stored value does not have the exact shape its model writes: validate it instead."""


def _trusted(model: type[M], raw: Any) -> M:
    """Build ``model`` from a decoded JSON object its own ``model_dump_json`` wrote.

    The result is what ``model_validate`` gives for that JSON (same field values,
    nested models as model instances, aware datetimes, every field in
    ``model_fields_set``), without running the validators again.

    Raises:
        _NotTrusted: the keys are not exactly the model's fields, or a datetime
            is not in the form pydantic writes.
    """
    plan = _plan(model)
    if type(raw) is not dict:
        raise _NotTrusted
    if tuple(raw) != plan.order:
        if raw.keys() != plan.fields:
            raise _NotTrusted
        raw = _in_order(raw, plan.order)
    try:
        for name, convert in plan.converters:
            raw[name] = convert(raw[name])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise _NotTrusted from exc
    record = _NEW(model)
    _SET_DICT(record, "__dict__", raw)
    _SET_FIELDS(record, set(plan.fields))
    _SET_EXTRA(record, None)
    _SET_PRIVATE(record, None)
    return record


@functools.cache
def stored_json_loader(model: type[M]) -> Callable[[bytes], M]:
    """:func:`from_stored_json` for one model, its plan bound once (the listings' per-record call).

    The same checks and result as :func:`from_stored_json`, with the lookups
    done once per model instead of once per record.
    """
    plan = _plan(model)
    order, fields, converters = plan.order, plan.fields, plan.converters
    # A frozen model's loader shares one fields set among the models it builds,
    # as pydantic's model_construct(_fields_set=...) keeps the set it is given:
    # nothing adds to it (assignment is refused; model_copy copies it first).
    shared = set(fields) if model.model_config.get("frozen") else None
    loads, validate = orjson.loads, model.model_validate_json
    new, set_dict = _NEW, _SET_DICT
    set_fields, set_extra, set_private = _SET_FIELDS, _SET_EXTRA, _SET_PRIVATE

    def load(payload: bytes) -> M:
        try:
            raw = loads(payload)
        except orjson.JSONDecodeError:
            return validate(payload)
        if type(raw) is not dict:
            return validate(payload)
        if tuple(raw) != order:
            if raw.keys() != fields:
                return validate(payload)
            raw = _in_order(raw, order)
        try:
            for name, convert in converters:
                raw[name] = convert(raw[name])
        except (ValueError, TypeError, AttributeError, KeyError, _NotTrusted):
            return validate(payload)
        record = new(model)
        set_dict(record, "__dict__", raw)
        set_fields(record, shared if shared is not None else set(fields))
        set_extra(record, None)
        set_private(record, None)
        return record

    return load


_Built = Callable[[List["tuple[dict[str, Any], None, set[str]]"]], List[Any]]


def _builder(model: type[BaseModel]) -> Optional[_Built]:
    """A pydantic-core validator that builds ``model`` instances from ``(__dict__, None,
    fields set)`` triples as ``model_construct`` does (no validator runs, values taken as
    they are), or ``None`` where this pydantic-core does not build them that way.

    A model schema over ``any``: pydantic-core makes each instance and sets its
    ``__dict__``, ``__pydantic_extra__`` (``None``), ``__pydantic_fields_set__`` and
    ``__pydantic_private__`` (``None``).  Some pydantic-core versions replace a model
    schema by the class's own (validating) validator when the class has no model
    validator; a probe tells, and the caller then sets the slots itself.
    """
    schema = core_schema.list_schema(core_schema.model_schema(model, core_schema.any_schema()))
    build: _Built = SchemaValidator(schema).validate_python
    probe = {"\x00probe": None}  # no model validates to exactly this __dict__
    fields: set[str] = set()
    try:
        (built,) = build([(probe, None, fields)])
    except ValueError:  # the class's own validator: a tuple is not a model's input
        return None
    if (
        type(built) is not model
        or built.__dict__ is not probe
        or built.__pydantic_fields_set__ is not fields
        or built.__pydantic_extra__ is not None
        or built.__pydantic_private__ is not None
    ):
        return None
    return build


@functools.cache
def stored_json_list_loader(model: type[M]) -> Callable[[Iterable[bytes]], list[M]]:
    """:func:`stored_json_loader` over many records: one call builds the list of models.

    Each model is what :func:`from_stored_json` gives for its payload.  The loop
    is :func:`stored_json_loader`'s body written out, without a call per record:
    a listing of a project's deployments is a few records, and that call was
    ~10% of each (issue 15: list_deployments <= 2x raw per record).
    """
    plan = _plan(model)
    order, fields = plan.order, plan.fields
    shared = set(fields) if model.model_config.get("frozen") else None
    # Python 3.11+ reads pydantic's "Z" itself: optional datetimes are converted
    # inline (what _read_optional_utc does, without a call per field).
    dates = tuple(
        name
        for name, convert in plan.converters
        if convert is _read_optional_utc and _FROMISO_READS_Z
    )
    converters = tuple((n, c) for n, c in plan.converters if n not in dates)
    by_name = bool(dates or converters)
    loads, fromiso, utc = orjson.loads, datetime.fromisoformat, timezone.utc
    new, set_dict = _NEW, _SET_DICT
    set_fields, set_extra, set_private = _SET_FIELDS, _SET_EXTRA, _SET_PRIVATE
    load_one = stored_json_loader(model)
    build = _builder(model)
    sink: deque[object] = deque(maxlen=0)  # consume(map(...)): runs it, keeps nothing
    consume = sink.extend
    get_tz = attrgetter("tzinfo")
    # The keys of the last record found to be exactly ``order``: orjson hands out
    # the same key objects for the same keys (its key cache), so comparing the next
    # record's keys with these is a comparison by identity, not by value.
    seen: tuple[str, ...] = ()
    # The datetime fields' names as ``seen`` holds them: a record's item is read and
    # written back by the dict's own key object, found by identity without comparing
    # the text (~7k instructions of a 20-record listing's 550k).
    at = tuple(order.index(name) for name in dates)
    date_keys: tuple[str, ...] = dates

    def remember(keys: tuple[str, ...]) -> None:
        nonlocal seen, date_keys
        seen = keys
        date_keys = tuple(keys[i] for i in at)

    def load_each(payloads: Iterable[bytes]) -> list[M]:
        found: list[M] = []
        append = found.append
        for payload in payloads:
            try:
                raw = loads(payload)
                if type(raw) is not dict:
                    raise _NotTrusted
                keys = tuple(raw)
                if keys != seen:
                    if keys == order:
                        remember(keys)
                    elif raw.keys() != fields:
                        raise _NotTrusted
                    else:
                        raw = _in_order(raw, order)
                for name in dates:
                    text = raw[name]
                    if text is not None:
                        value = fromiso(text)
                        raw[name] = value if value.tzinfo is not None else value.replace(tzinfo=utc)
                for name, convert in converters:
                    raw[name] = convert(raw[name])
            except (
                orjson.JSONDecodeError,
                ValueError,
                TypeError,
                AttributeError,
                KeyError,
                _NotTrusted,
            ):
                append(load_one(payload))  # validated by pydantic, or its error
                continue
            record = new(model)
            set_dict(record, "__dict__", raw)
            set_fields(record, shared if shared is not None else set(fields))
            set_extra(record, None)
            set_private(record, None)
            append(record)
        return found

    def load_all(payloads: Iterable[bytes]) -> list[M]:
        batch = payloads if type(payloads) is list else list(payloads)
        n = len(batch)
        if not n:
            return []
        # The whole batch in C loops (map over builtins: no bytecode per record);
        # anything unusual (a record that does not decode, another key order, a
        # datetime not in pydantic's form) goes through load_each, record by record,
        # so results and errors are load_each's.
        try:
            raws = list(map(loads, batch))
        except orjson.JSONDecodeError:
            return load_each(batch)
        # Every record must be a JSON object.  With a field read by name below (a
        # datetime or a nested model), that read refuses anything else (TypeError),
        # so only models without one pay for this check.
        if not by_name and list(map(type, raws)).count(dict) != n:
            return load_each(batch)
        # tuple(raw) of a dict is its keys; orjson's key cache makes the comparison
        # with ``seen`` one of identities.
        try:
            keys = list(map(tuple, raws))
        except TypeError:  # a number, a boolean or null
            return load_each(batch)
        if keys.count(seen) != n:
            if keys.count(order) != n:
                return load_each(batch)
            remember(keys[0])
        try:
            for name in date_keys:
                texts = list(map(itemgetter(name), raws))
                values: list[Any]
                stamps: list[datetime]
                try:
                    values = stamps = list(map(fromiso, texts))
                except TypeError:  # a None among them (or a value that is not a string)
                    values = [None if t is None else fromiso(t) for t in texts]
                    stamps = [v for v in values if v is not None]
                # pydantic writes UTC as "Z", which fromisoformat reads as the timezone.utc
                # singleton: counting it compares identities (``None in`` compares values).
                zones = list(map(get_tz, stamps))
                if zones.count(utc) != len(zones) and None in zones:
                    return load_each(batch)  # a naive time: load_each makes it UTC
                consume(map(setitem, raws, repeat(name, n), values))
            for name, convert in converters:
                values = list(map(convert, map(itemgetter(name), raws)))
                consume(map(setitem, raws, repeat(name, n), values))
        except (ValueError, TypeError, AttributeError, KeyError, _NotTrusted):
            return load_each(batch)
        sets: Iterable[set[str]] = (
            repeat(shared, n) if shared is not None else map(set, repeat(fields, n))
        )
        if build is not None:
            # pydantic-core sets each model's four slots itself: no C call per slot
            # and record from here (issue 15: list_deployments <= 2x raw per record).
            return build(list(zip(raws, repeat(None, n), sets)))
        found = list(map(new, repeat(model, n)))
        consume(map(set_dict, found, repeat("__dict__", n), raws))
        consume(map(set_fields, found, sets))
        consume(map(set_extra, found, repeat(None, n)))
        consume(map(set_private, found, repeat(None, n)))
        return found

    return load_all


def from_stored_json(model: type[M], payload: bytes) -> M:
    """Build ``model`` from a stored record's JSON (its frame already CRC-checked).

    Records are validated when they are written, so a read builds the model
    without validating again (several times cheaper): the result equals what
    ``model.model_validate_json(payload)`` gives.  A payload of another shape
    (a field missing or extra, written by another version) goes through
    pydantic, so defaults are filled and errors are pydantic's.
    """
    load: Callable[[bytes], M] = stored_json_loader(model)
    return load(payload)
