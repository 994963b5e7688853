"""Data classes that compile no code at import: the cold start's share of ``dataclasses``.

``dataclasses.dataclass`` writes each class's ``__init__``, ``__repr__`` and ``__eq__`` (and,
frozen, ``__hash__``, ``__setattr__`` and ``__delattr__``) as source text and compiles it when
the class is made: about 0.1 ms a method, so the 35 classes a Lambda container imports cost 17 ms
of its 60 ms of imports (made this way, 31 of them brought a cold start's first write 12 to
38 ms sooner: docs/lambda.md). :func:`data_class` makes the same class from the same
declaration with methods shared by every such class, which read the class's fields at each
call instead:

- the fields as ``dataclasses`` reads them (defaults, ``field(default_factory=...)``,
  ``init=False``, ``repr=False``, ``compare=False``, mutable defaults refused), so
  ``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work as on any
  dataclass, and ``__match_args__``;
- ``__init__`` taking the fields positionally or by name, then calling ``__post_init__``;
- the ``__repr__``, ``__eq__`` (same class, fields compared in order) and ``__hash__`` of a
  dataclass (frozen: the fields' hash; else unhashable), unless the class defines its own;
- ``frozen=True``: assigning or deleting a field raises ``dataclasses.FrozenInstanceError``;
  ``slots=True``: ``__slots__`` (instances pickle as a dataclass's do).

Made this way an instance takes about a microsecond more to make, so the classes made once per
record (a :class:`~ddb2bq.records.Change`, its :class:`~ddb2bq.rows.Rows`, a writer's
``Pending`` row, the pipeline's ``Outcome``) stay ``@dataclass``: there its compiled ``__init__``
is the fastest there is. ``kw_only``, ``InitVar`` and ``order`` are not supported (refused).

>>> @data_class(frozen=True)
... class Point:
...     x: int
...     y: int = 0
>>> Point(1), Point(1) == Point(1, 0), dataclasses.replace(Point(1), y=2)
(Point(x=1, y=0), True, Point(x=1, y=2))
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

_MISSING: Any = dataclasses.MISSING
_set = object.__setattr__


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def data_class(*, frozen: bool = False, slots: bool = False) -> Callable[[type[T]], type[T]]:
    """``@dataclasses.dataclass(frozen=..., slots=...)`` without code compiled (see above)."""

    def wrap(cls: type[T]) -> type[T]:
        return _make(cls, frozen=frozen, slots=slots)

    return wrap


def _make(cls: type[T], *, frozen: bool, slots: bool) -> type[T]:
    own = dict(cls.__dict__)  # what the class body defined, before dataclasses adds anything
    made: type[T] = dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=slots)
    fields = dataclasses.fields(made)  # type: ignore[arg-type]
    _refuse_unsupported(made, fields)
    name = made.__qualname__
    compared = tuple(f.name for f in fields if f.compare)
    key = _key(compared)
    made_methods = {
        "__init__": _init(name, fields, hasattr(made, "__post_init__")),
        "__repr__": _repr(tuple(f.name for f in fields if f.repr)),
        "__eq__": _eq(key),
    }
    for method, made_method in made_methods.items():
        if method not in own:
            setattr(made, method, made_method)
    # a dataclass's rule: the body's own hash is kept (``__hash__ = None`` beside an ``__eq__``
    # is Python's, not the body's); else the fields' hash when frozen, and unhashable when not
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    if not explicit_hash:
        made.__hash__ = _hash(key) if frozen else None  # type: ignore[assignment,method-assign]
    if frozen:
        names = frozenset(f.name for f in fields)
        for method in ("__setattr__", "__delattr__"):
            if method in own:
                raise TypeError(f"Cannot overwrite attribute {method} in class {name}")
        made.__setattr__ = _frozen_setattr(made, names)  # type: ignore[method-assign]
        made.__delattr__ = _frozen_delattr(made, names)  # type: ignore[method-assign]
        if slots:  # as a frozen dataclass with slots: its state is set past __setattr__
            state = tuple(f.name for f in fields)
            setattr(made, "__getstate__", _getstate(state))  # noqa: B010
            setattr(made, "__setstate__", _setstate(state))  # noqa: B010
    return made


def _refuse_unsupported(made: type, fields: tuple[dataclasses.Field[Any], ...]) -> None:
    known = {f.name for f in fields}
    for field in made.__dataclass_fields__.values():  # type: ignore[attr-defined]
        if field.name not in known and "ClassVar" not in str(field.type):
            raise TypeError(f"{made.__qualname__}.{field.name}: data_class takes no InitVar")
    defaulted = False
    for field in fields:
        if field.kw_only is True:
            raise TypeError(f"{made.__qualname__}.{field.name}: data_class takes no kw_only")
        if not field.init:
            continue
        has_default = field.default is not _MISSING or field.default_factory is not _MISSING
        if defaulted and not has_default:
            raise TypeError(f"non-default argument {field.name!r} follows default argument")
        defaulted = defaulted or has_default


def _init(
    name: str, fields: tuple[dataclasses.Field[Any], ...], post_init: bool
) -> Callable[..., None]:
    given: tuple[tuple[str, Any, Any], ...] = tuple(
        (f.name, f.default, f.default_factory) for f in fields if f.init
    )
    taken = tuple(field for field, _, _ in given)
    accepted = frozenset(taken)
    required = sum(default is _MISSING and factory is _MISSING for _, default, factory in given)
    takes = (
        f"{len(taken) + 1}"
        if required == len(taken)
        else f"from {required + 1} to {len(taken) + 1}"
    )
    others: tuple[tuple[str, Any, Any], ...] = tuple(
        (f.name, f.default, f.default_factory)
        for f in fields
        if not f.init and (f.default is not _MISSING or f.default_factory is not _MISSING)
    )

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 (the method it makes)
        if len(args) > len(taken):
            raise TypeError(
                f"{name}.__init__() takes {takes} positional arguments but "
                f"{len(args) + 1} were given"
            )
        values = dict(zip(taken, args, strict=False))
        for key, value in kwargs.items():
            if key not in accepted:
                raise TypeError(f"{name}.__init__() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{name}.__init__() got multiple values for argument {key!r}")
            values[key] = value
        for field, default, factory in given:
            if field in values:
                value = values[field]
            elif default is not _MISSING:
                value = default
            elif factory is not _MISSING:
                value = factory()
            else:
                raise TypeError(
                    f"{name}.__init__() missing 1 required positional argument: {field!r}"
                )
            _set(self, field, value)
        for field, default, factory in others:
            _set(self, field, factory() if default is _MISSING else default)
        if post_init:
            self.__post_init__()

    return __init__


def _repr(shown: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:  # noqa: N807 (the method it makes)
        inner = ", ".join(f"{field}={getattr(self, field)!r}" for field in shown)
        return f"{self.__class__.__qualname__}({inner})"

    return __repr__


def _key(compared: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of an instance's compared fields."""
    if len(compared) > 1:
        return operator.attrgetter(*compared)  # a tuple already
    if compared:
        get = operator.attrgetter(compared[0])
        return lambda instance: (get(instance),)
    return lambda instance: ()


def _eq(key: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:  # noqa: N807 (the method it makes)
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    return __eq__


def _hash(key: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:  # noqa: N807 (the method it makes)
        return hash(key(self))

    return __hash__


def _frozen_setattr(made: Any, names: frozenset[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807 (the method it makes)
        if type(self) is made or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(made, self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(made: Any, names: frozenset[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:  # noqa: N807 (the method it makes)
        if type(self) is made or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(made, self).__delattr__(name)

    return __delattr__


def _getstate(names: tuple[str, ...]) -> Callable[[Any], list[Any]]:
    def __getstate__(self: Any) -> list[Any]:  # noqa: N807 (the method it makes)
        return [getattr(self, name) for name in names]

    return __getstate__


def _setstate(names: tuple[str, ...]) -> Callable[[Any, list[Any]], None]:
    def __setstate__(self: Any, state: list[Any]) -> None:  # noqa: N807 (the method it makes)
        for name, value in zip(names, state, strict=True):
            _set(self, name, value)

    return __setstate__


__all__ = ["data_class"]
