"""data_class: the same class as @dataclass from the same declaration, with no code compiled."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from ddb2bq.classes import data_class

Decorator = Callable[[type[Any]], type[Any]]


def both(**options: bool) -> list[Decorator]:
    return [dataclasses.dataclass(**options), data_class(**options)]  # type: ignore[list-item]


def declare(decorator: Decorator) -> type[Any]:
    """Fields of every kind: required, default, factory, not in __init__, not shown, not
    compared, a ClassVar, and a __post_init__ that checks."""

    class Order:
        """An order."""

        kind: ClassVar[str] = "order"
        key: str
        amount: int = 0
        lines: list[str] = dataclasses.field(default_factory=list)
        secret: str = dataclasses.field(default="x", repr=False)
        seen: int = dataclasses.field(default=0, compare=False)
        cache: dict[str, int] = dataclasses.field(default_factory=dict, init=False)

        def __post_init__(self) -> None:
            if self.amount < 0:
                raise ValueError("amount must not be negative")

        def total(self) -> int:
            return self.amount * 2

    return decorator(Order)


def hashed(instance: object) -> object:
    """The instance's hash, or the error hashing it raises."""
    try:
        return hash(instance)
    except TypeError as exc:
        return str(exc)


@data_class(frozen=True, slots=True)
class Pickled:
    key: str
    amount: int = 0


OPTIONS = [{}, {"frozen": True}, {"slots": True}, {"frozen": True, "slots": True}]


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_instances_behave_as_the_dataclass_ones(options: dict[str, bool]) -> None:
    # GIVEN the same declaration made by @dataclass and by data_class
    real, lite = (declare(d) for d in both(**options))
    for make in ({"key": "a"}, {"key": "a", "amount": 3, "lines": ["l"], "secret": "s", "seen": 9}):
        # WHEN instances are made with the same arguments (by name, and in order)
        a, b = real(**make), lite(**make)
        positional = list(make.values())
        # THEN their fields, repr, equality, hash, replace, asdict and match args are alike
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
        assert repr(a).replace("declare.<locals>.", "") == repr(b).replace("declare.<locals>.", "")
        assert dataclasses.asdict(real(*positional)) == dataclasses.asdict(lite(*positional))
        assert b == lite(**make)
        assert not b != lite(**make)  # noqa: SIM202 (__ne__ from __eq__)
        assert (b == lite(**{**make, "seen": 1})) == (a == real(**{**make, "seen": 1}))
        assert b != lite(**{**make, "key": "other"})
        assert b != a  # another class: not equal, as between two dataclasses
        assert hashed(b) == hashed(a)
        assert (lite.__hash__ is None) == (real.__hash__ is None)
        assert dataclasses.asdict(dataclasses.replace(b, amount=7)) == dataclasses.asdict(
            dataclasses.replace(a, amount=7)
        )
        assert [f.name for f in dataclasses.fields(b)] == [f.name for f in dataclasses.fields(a)]
        assert lite.__match_args__ == real.__match_args__
        assert dataclasses.is_dataclass(b)
        assert b.total() == a.total()
        assert b.kind == "order"
        # AND each instance has its own default factory value
        assert b.lines is not lite(**make).lines or "lines" in make
        assert b.cache == {}
        assert b.cache is not lite(**make).cache


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_wrong_arguments_raise_what_the_dataclass_raises(options: dict[str, bool]) -> None:
    # GIVEN the same declaration made both ways
    # WHEN each is given wrong arguments THEN both raise the same TypeError
    real, lite = (declare(d) for d in both(**options))
    for args, kwargs in (
        ((), {}),  # a required field missing
        (("a", 1, [], "s", 0, "extra"), {}),  # too many positional arguments
        (("a",), {"key": "b"}),  # twice
        ((), {"key": "a", "cache": {}}),  # a field not in __init__
        ((), {"key": "a", "unknown": 1}),
    ):
        with pytest.raises(TypeError) as expected:
            real(*args, **kwargs)
        with pytest.raises(TypeError) as got:
            lite(*args, **kwargs)
        assert str(got.value).split("()")[-1] == str(expected.value).split("()")[-1]
    # AND __post_init__ runs
    with pytest.raises(ValueError, match="amount must not be negative"):
        lite("a", -1)


@pytest.mark.parametrize("slots", [False, True])
def test_a_frozen_instance_refuses_changes_and_pickles(slots: bool) -> None:
    # GIVEN a frozen instance WHEN a field is set or deleted THEN that is refused
    lite = declare(data_class(frozen=True, slots=slots))
    order = lite("a", 2)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'amount'"):
        order.amount = 3
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'key'"):
        del order.key
    # AND it pickles (a module's class), and is a dict key by its fields
    assert pickle.loads(pickle.dumps(Pickled("a", 2))) == Pickled("a", 2)
    assert {Pickled("a", 2): 1}[Pickled("a", 2)] == 1


def test_slots_are_made_and_the_class_body_methods_are_kept() -> None:
    # GIVEN a class with slots and its own __repr__ WHEN made THEN both are kept as declared
    @data_class(slots=True)
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

    named = Named("n")
    assert Named.__slots__ == ("name",)
    assert not hasattr(named, "__dict__")
    assert repr(named) == "<n>"
    assert Named.__hash__ is None
    with pytest.raises(AttributeError):
        named.other = 1  # type: ignore[attr-defined]


def test_a_recursive_repr_stops() -> None:
    # GIVEN an instance holding itself WHEN shown THEN its repr stops at the loop
    @data_class()
    class Node:
        child: Any = None

    node = Node()
    node.child = node
    assert repr(node) == "test_a_recursive_repr_stops.<locals>.Node(child=...)"


def test_what_it_cannot_make_is_refused_when_the_class_is_made() -> None:
    # GIVEN declarations @dataclass refuses, or data_class does not support
    # WHEN made THEN each is refused at once, naming the field
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @data_class()
        class Disordered:
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="takes no kw_only"):

        @data_class()
        class KeywordOnly:
            a: int = dataclasses.field(kw_only=True)

    with pytest.raises(ValueError, match="mutable default"):

        @data_class()
        class Shared:
            items: list[int] = []  # noqa: RUF012


BODIES: dict[str, dict[str, Any]] = {
    "no methods": {},
    "its own __eq__": {"__eq__": lambda self, other: True},
    "its own __hash__": {"__hash__": lambda self: 7},
    "__hash__ = None": {"__hash__": None},
}


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("body", BODIES, ids=str)
def test_the_hash_follows_the_dataclass_rule(frozen: bool, body: str) -> None:
    # GIVEN a class body with or without its own __eq__ or __hash__, made both ways
    def make(decorator: Decorator) -> type[Any]:
        return decorator(type("Keyed", (), {"__annotations__": {"x": "int"}, **BODIES[body]}))

    real, lite = make(dataclasses.dataclass(frozen=frozen)), make(data_class(frozen=frozen))
    # WHEN an instance is hashed THEN both are unhashable, or hash alike
    assert (lite.__hash__ is None) == (real.__hash__ is None)
    assert hashed(lite(1)) == hashed(real(1))
