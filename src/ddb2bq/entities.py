"""Entities of a single-table design: which items are users, which are orders, and the key parts.

Many DynamoDB tables keep several entity types under one key schema, with the entity in a prefix
of the key (``pk = "USER#42"``, ``sk = "ORDER#2026-11-30#981"``) and often a ``type`` attribute.
An :class:`Entity` is a rule, a template per attribute; rules are tried in order, the first that
matches wins, and an item matching none stays in the table's default mirror. docs/entities.md
has the whole configuration.

Templates (ElectroDB style, ``USER#{user_id}``): literal text matches itself exactly; a
placeholder followed by literal text matches one or more characters up to the first occurrence
of that literal's *first character*, and the literal must then follow in full; a placeholder at
the end matches the rest of the value (one or more characters of any kind). Two placeholders in
a row, an empty template and ``{`` or ``}`` in literal text are refused; a placeholder used twice
matches only when both places hold the same text. Templates match only string (``S``) values.
So splitting a key and building it again from its parts gives the key back, and building a key
from parts (which :meth:`Template.build` refuses when a part is empty or holds the first
character of the literal after it) and splitting it gives the parts back.

Typed parts. A part is STRING unless typed; a typed part must be written in its type's one
canonical spelling, else the item does *not* match the entity (``"007"`` is no INT64 part; an
order with ``sk = "ORDER#2026-2-1#7"`` is no order), so the column value gives the part back:

=========== =================================================== =============================
type        the part's text                                     value in a JSON row
=========== =================================================== =============================
STRING      any                                                 str
INT64       ``0`` or ``-?[1-9][0-9]*`` within -2^63 .. 2^63-1   int
NUMERIC     ``-?(0|[1-9][0-9]*)(.[0-9]*[1-9])?``, 29 + 9 digits str (the text)
BIGNUMERIC  the same, within BIGNUMERIC's range, scale <= 38    str (the text)
DATE        ``YYYY-MM-DD``, a real date                         str (the text)
TIMESTAMP   ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](Z|+HH:MM)``     str, the instant in UTC
BOOL        ``true`` or ``false``                               bool
=========== =================================================== =============================

``-0`` is no number part. Values are only data: ``x'; DROP TABLE y; --`` is a string part.
A REMOVE without an old image is classified by its keys when the rule reads only key attributes
(:meth:`Entity.needs_only_keys`); otherwise the caller takes the entity of the key's previous
change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ddb2bq.exceptions import ConfigError
from ddb2bq.schema import MAX_NAME, MIRROR_COLUMNS, Column, column_base_name

PART_TYPES = ("STRING", "INT64", "NUMERIC", "BIGNUMERIC", "DATE", "TIMESTAMP", "BOOL")
RESERVED_COLUMNS = (*MIRROR_COLUMNS, "_entity")
SETTINGS = ("name", "match", "types", "promote")

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")
_INT64 = re.compile(r"0|-?[1-9][0-9]{0,18}")
_NUMERIC = re.compile(r"-?(?:0|[1-9][0-9]{0,28})(?:\.[0-9]{0,8}[1-9])?")
_BIGNUMERIC = re.compile(r"-?(?:0|[1-9][0-9]{0,38})(?:\.[0-9]{0,37}[1-9])?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}|\.[0-9]{6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
# Characters every value of a type holds: a separator starting with one can never follow it.
_ALWAYS_HOLDS = {"DATE": "-", "TIMESTAMP": "-:T"}


@dataclass(frozen=True, slots=True)
class Template:
    """A key template: ``literals[0] {names[0]} literals[1] ... {names[-1]} literals[-1]``.

    >>> sk = Template.parse("ORDER#{ordered_on}#{order_id}")
    >>> sk.split("ORDER#2026-11-30#981")
    {'ordered_on': '2026-11-30', 'order_id': '981'}
    >>> sk.build({"ordered_on": "2026-11-30", "order_id": "981"})
    'ORDER#2026-11-30#981'
    >>> sk.split("ORDER#2026-11-30") is None, Template.parse("PROFILE").split("PROFILE")
    (True, {})
    """

    text: str
    literals: tuple[str, ...]
    names: tuple[str, ...]
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def __post_init__(self) -> None:
        pieces = [re.escape(self.literals[0])]
        for after in self.literals[1:]:
            pieces.append(f"([^{re.escape(after[0])}]+)" if after else "(.+)")
            pieces.append(re.escape(after))
        object.__setattr__(self, "_pattern", re.compile("".join(pieces), re.DOTALL))

    @classmethod
    def parse(cls, text: str) -> Template:
        """The template written as ``text``; raises ConfigError saying what is wrong and the fix.

        >>> Template.parse("USER#{user_id}").names
        ('user_id',)
        """
        if not text:
            raise ConfigError("The template is empty. Write the literal value or a template.")
        literals, names, start = [], [], 0
        for found in _PLACEHOLDER.finditer(text):
            literals.append(text[start : found.start()])
            names.append(found.group(1))
            start = found.end()
        literals.append(text[start:])
        _check_syntax(text, literals, names)
        return cls(text, tuple(literals), tuple(names))

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholder names, each once, in order of first appearance."""
        return tuple(dict.fromkeys(self.names))

    def split(self, value: str) -> dict[str, str] | None:
        """The parts of ``value`` by placeholder name, or None when ``value`` does not match."""
        found = self._pattern.fullmatch(value)
        if found is None:
            return None
        parts: dict[str, str] = {}
        for name, text in zip(self.names, found.groups(), strict=True):
            if parts.setdefault(name, text) != text:
                return None
        return parts

    def build(self, parts: Mapping[str, str]) -> str:
        """The value holding ``parts``; raises ValueError for parts :meth:`split` cannot return.

        >>> Template.parse("LINE#{line_no}").build({"line_no": "3"})
        'LINE#3'
        """
        pieces = [self.literals[0]]
        for name, after in zip(self.names, self.literals[1:], strict=True):
            if name not in parts:
                raise ValueError(f"The template {self.text!r} needs the part {name!r}.")
            text = parts[name]
            if not text or (after and after[0] in text):
                raise ValueError(
                    f"The part {name}={text!r} cannot stand in the template {self.text!r}: a part "
                    "is never empty and never holds the first character of the literal after it."
                )
            pieces += (text, after)
        return "".join(pieces)


def _check_syntax(text: str, literals: Sequence[str], names: Sequence[str]) -> None:
    for literal in literals:
        if "{" in literal or "}" in literal:
            raise ConfigError(
                f"The template {text!r} has an unmatched brace in {literal!r}. Write each "
                "placeholder as {name}; literal braces cannot be matched."
            )
    for index, name in enumerate(names):
        if not name:
            raise ConfigError(f"The template {text!r} has an empty placeholder {{}}. Name it.")
        if index and not literals[index]:
            raise ConfigError(
                f"The template {text!r} has {{{names[index - 1]}}}{{{name}}}, two placeholders in "
                "a row, so the value cannot be split between them. Put a literal separator "
                f"between them, such as {{{names[index - 1]}}}#{{{name}}}."
            )


def typed_part(text: str, part_type: str) -> object | None:
    """The JSON-row value of a key part of ``part_type`` (one of PART_TYPES), or None when
    ``text`` is not the type's canonical spelling (the item then does not match the entity).

    >>> typed_part("9007199254740993", "INT64"), typed_part("007", "INT64")
    (9007199254740993, None)
    >>> typed_part("2026-11-30T10:00:00.000+02:00", "TIMESTAMP")
    '2026-11-30T08:00:00.000000Z'
    """
    return _PARSERS[part_type](text)


def _int64(text: str) -> int | None:
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def _numeric(text: str) -> str | None:
    return text if text != "-0" and _NUMERIC.fullmatch(text) else None


def _bignumeric(text: str) -> str | None:
    if text == "-0" or not _BIGNUMERIC.fullmatch(text):
        return None
    whole, _, fraction = text.lstrip("-").partition(".")
    scaled = int(whole + fraction.ljust(38, "0"))
    limit = 2**255 if text.startswith("-") else 2**255 - 1
    return text if scaled <= limit else None


def _date(text: str) -> str | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        date.fromisoformat(text)
    except ValueError:
        return None
    return text


def _timestamp(text: str) -> str | None:
    if not _TIMESTAMP.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_PARSERS: dict[str, Callable[[str], object | None]] = {
    "STRING": lambda text: text,
    "INT64": _int64,
    "NUMERIC": _numeric,
    "BIGNUMERIC": _bignumeric,
    "DATE": _date,
    "TIMESTAMP": _timestamp,
    "BOOL": {"true": True, "false": False}.get,
}


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity type: a template (or literal value) per attribute, the parts' types, and the
    attributes promoted to columns of its mirror.

    >>> orders = Entity("orders", {"pk": "USER#{user_id}", "sk": "ORDER#{n}"}, {"n": "INT64"})
    >>> orders.matches({"pk": {"S": "USER#42"}, "sk": {"S": "ORDER#981"}, "total": {"N": "5"}})
    {'user_id': '42', 'n': 981}
    >>> orders.matches({"pk": {"S": "USER#42"}, "sk": {"S": "PROFILE"}}) is None
    True
    """

    name: str
    match: Mapping[str, Template | str]
    types: Mapping[str, str] = field(default_factory=dict)
    promote: Sequence[str] = ()
    templates: Mapping[str, Template] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        templates = {
            a: t if isinstance(t, Template) else Template.parse(t) for a, t in self.match.items()
        }
        types = {name: kind.upper() for name, kind in self.types.items()}
        unknown = sorted(set(types.values()) - set(PART_TYPES))
        if unknown:
            raise ValueError(f"Entity {self.name!r}: unknown part types {unknown}.")
        object.__setattr__(self, "match", dict(templates))
        object.__setattr__(self, "templates", templates)
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "promote", tuple(self.promote))

    def __hash__(self) -> int:
        return hash(self.name)

    def matches(self, image: Mapping[str, Mapping[str, Any]]) -> dict[str, object] | None:
        """The typed key-part columns when ``image`` (DynamoDB JSON) is this entity, else None."""
        parts: dict[str, str] = {}
        for attribute, template in self.templates.items():
            text = image.get(attribute, {}).get("S")
            found = template.split(text) if isinstance(text, str) else None
            if found is None:
                return None
            for name, part in found.items():
                if parts.setdefault(name, part) != part:
                    return None
        columns = {}
        for name, text in parts.items():
            value = _PARSERS[self.types.get(name, "STRING")](text)
            if value is None:
                return None
            columns[name] = value
        return columns

    def columns(self) -> tuple[Column, ...]:
        """The key-part columns, in order of first appearance in the rule.

        >>> [(c.name, c.type) for c in Entity("lines", {"sk": "LINE#{n}"}, {"n": "INT64"}).columns()]
        [('n', 'INT64')]
        """
        names = dict.fromkeys(n for t in self.templates.values() for n in t.placeholders)
        return tuple(Column(name, self.types.get(name, "STRING")) for name in names)

    def needs_only_keys(self, key_names: Sequence[str]) -> bool:
        """Whether the rule reads only key attributes, so a REMOVE's keys alone are enough."""
        return set(self.match) <= set(key_names)


@dataclass(frozen=True, slots=True)
class Entities:
    """The configured entities of one table, in the order their rules are tried.

    >>> entities = Entities.from_config(
    ...     [{"name": "users", "match": {"pk": "USER#{user_id}", "sk": "PROFILE"}}],
    ...     table="app", keys=["pk", "sk"])
    >>> entity, parts = entities.classify({"pk": {"S": "USER#42"}, "sk": {"S": "PROFILE"}})
    >>> entity.name, parts
    ('users', {'user_id': '42'})
    """

    entities: tuple[Entity, ...] = ()

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities)

    def __len__(self) -> int:
        return len(self.entities)

    def named(self, name: str) -> Entity:
        """The entity called ``name`` (raises KeyError), such as the one a changelog row names."""
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(name)

    def classify(
        self, image: Mapping[str, Mapping[str, Any]]
    ) -> tuple[Entity, dict[str, object]] | None:
        """The first entity ``image`` matches and its key-part columns; None when none does."""
        for entity in self.entities:
            parts = entity.matches(image)
            if parts is not None:
                return entity, parts
        return None

    def classify_keys(
        self, keys: Mapping[str, Mapping[str, Any]], key_names: Sequence[str]
    ) -> tuple[Entity, dict[str, object]] | None:
        """The entity of a REMOVE known only by its ``keys`` (no old image), or None when the
        keys cannot tell: the first rule that could match an item with these keys decides, so
        a rule reading other attributes (``type``) whose key templates match gives None (the
        mirror then takes the key's entity from its previous change), not a later rule.

        >>> entities = Entities((Entity("orders", {"pk": "USER#{u}", "type": "Order"}),
        ...                      Entity("users", {"pk": "USER#{u}"})))
        >>> entities.classify_keys({"pk": {"S": "USER#1"}}, ["pk"]) is None
        True
        >>> entities.classify_keys({"pk": {"S": "ORDER#1"}}, ["pk"]) is None
        True
        """
        for entity in self.entities:
            if entity.needs_only_keys(key_names):
                parts = entity.matches(keys)
                if parts is not None:
                    return entity, parts
            elif _keys_could_match(entity, keys, key_names):
                return None
        return None

    @classmethod
    def from_config(
        cls,
        raw: Sequence[Mapping[str, Any]],
        *,
        table: str,
        keys: Sequence[str],
        key_types: Mapping[str, str] | None = None,
    ) -> Entities:
        """The entities of the ``[[entities]]`` tables ``raw``, for the table whose mirror is
        ``table`` and whose key attributes are ``keys`` (``key_types``: attribute -> S, N or B).

        Raises ConfigError naming the entity, the setting, the offending text and the fix.
        """
        if not isinstance(raw, list | tuple):
            raise ConfigError(
                f"[[entities]] must be a list of tables, got {raw!r}. Write each entity as its "
                "own [[entities]] table (double brackets)."
            )
        tables = (table, f"{table}_changes", f"{table}_generations")
        taken = {n.lower(): f"the table {n!r}" for n in tables}
        entities = []
        for index, raw_entry in enumerate(raw, start=1):
            entry = _Entry(index, raw_entry)
            entity = entry.entity(keys, key_types or {})
            if entity.name.lower() in taken:
                raise entry.error(
                    "name", "taken", owner=taken[entity.name.lower()], name=entity.name
                )
            taken[entity.name.lower()] = f"the entity {entity.name!r}"
            entities.append(entity)
        return cls(tuple(entities))


def _keys_could_match(
    entity: Entity, keys: Mapping[str, Mapping[str, Any]], key_names: Sequence[str]
) -> bool:
    """Whether an item with ``keys`` may be ``entity``'s, as far as its key attributes tell."""
    for attribute, template in entity.templates.items():
        if attribute in key_names:
            text = keys.get(attribute, {}).get("S")
            if not isinstance(text, str) or template.split(text) is None:
                return False
    return True


# What can be wrong in an [[entities]] table, and the fix: one sentence each.
_PROBLEMS = {
    "entry": "expected a table of settings, got {raw!r}. Write name and match (and types and "
    "promote when needed) under [[entities]].",
    "setting": "unknown setting. The settings are name, match, types and promote.",
    "name": "{name!r} is not a BigQuery table name. Use letters, digits and underscores, not a "
    "digit first, at most 1024 characters, such as 'order_lines'.",
    "taken": "{name!r} is the name of {owner} (names are compared ignoring case). Choose "
    "another name.",
    "match": "expected a table of attribute = template, got {raw!r}. Write, for example, "
    'match = {{ pk = "USER#{{user_id}}", sk = "PROFILE" }}.',
    "not_text": "{raw!r} is not a string, and templates match only string (S) values. Quote it "
    "if the attribute holds strings.",
    "not_s": "the key attribute {attribute!r} is of type {kind}, and templates match only string "
    "(S) values. Remove this match.",
    "template": "{error}",
    "promote": "expected a list of attribute names, got {raw!r}. Write, for example, "
    'promote = ["total", "status"].',
    "promote_key": "{attribute!r} is a key attribute, a column of the mirror already. Remove it.",
    "promote_twice": "{attribute!r} is listed twice. List it once.",
    "column": "the placeholder {{{part}}} is not a BigQuery column name (letters, digits and "
    "underscores, at most 300 characters). Name it {{{wanted}}}.",
    "collides": "the placeholder {{{part}}} would be a column named like {owner}. Rename the "
    "placeholder.",
    "case": "{{{first}}} and {{{part}}} differ only in case and would share one column. Spell "
    "both the same (one part) or name them apart.",
    "types": 'expected a table of part = "TYPE", got {raw!r}. Write, for example, '
    'types = {{ order_id = "INT64" }}.',
    "type_part": "{part!r} is not a placeholder of this entity's match (those are {parts}). "
    "Remove it or correct its name.",
    "type": "{raw!r} is not a key-part type. Use one of " + ", ".join(PART_TYPES) + ".",
    "never": "a {kind} always holds {char!r}, so {{{part}}}{char} can never match. Choose "
    "another separator, such as '#'.",
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One ``[[entities]]`` table being read; :meth:`error` names it."""

    index: int
    raw: object

    def error(self, setting: str, problem: str, **fields: object) -> ConfigError:
        name = self.raw.get("name") if isinstance(self.raw, Mapping) else None
        label = repr(name) if isinstance(name, str) and name else "no name"
        text = _PROBLEMS[problem].format(**fields)
        return ConfigError(f"Entity {self.index} ({label}), [[entities]] {setting}: {text}")

    def entity(self, keys: Sequence[str], key_types: Mapping[str, str]) -> Entity:
        if not isinstance(self.raw, Mapping):
            raise self.error("", "entry", raw=self.raw)
        unknown = sorted(set(self.raw) - set(SETTINGS))
        if unknown:
            raise self.error(unknown[0], "setting")
        name = self.raw.get("name")
        if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
            raise self.error("name", "name", name=name)
        match = self._match(self.raw.get("match"), key_types)
        promote = self._promote(self.raw.get("promote", []), keys)
        self._check_placeholders(match, keys, promote)
        types = self._types(self.raw.get("types", {}), match)
        return Entity(name, match, types, promote)

    def _match(self, raw: object, key_types: Mapping[str, str]) -> dict[str, Template]:
        if not isinstance(raw, Mapping) or not raw:
            raise self.error("match", "match", raw=raw)
        match = {}
        for attribute, text in raw.items():
            if not isinstance(text, str):
                raise self.error(f"match.{attribute}", "not_text", raw=text)
            where, kind = f"match.{attribute} = {text!r}", key_types.get(attribute, "S")
            if kind != "S":
                raise self.error(where, "not_s", attribute=attribute, kind=kind)
            try:
                match[attribute] = Template.parse(text)
            except ConfigError as exc:
                raise self.error(where, "template", error=exc) from exc
        return match

    def _promote(self, raw: object, keys: Sequence[str]) -> tuple[str, ...]:
        if not isinstance(raw, list) or not all(isinstance(a, str) and a for a in raw):
            raise self.error("promote", "promote", raw=raw)
        for attribute in raw:
            if attribute in keys:
                raise self.error("promote", "promote_key", attribute=attribute)
            if raw.count(attribute) > 1:
                raise self.error("promote", "promote_twice", attribute=attribute)
        return tuple(raw)

    def _check_placeholders(
        self, match: Mapping[str, Template], keys: Sequence[str], promote: Sequence[str]
    ) -> None:
        taken = {c.lower(): f"ddb2bq's own column {c!r}" for c in RESERVED_COLUMNS}
        for kind, attributes in (("key", keys), ("promoted", promote)):
            for a in attributes:
                taken[a.lower()] = taken[column_base_name(a).lower()] = f"the {kind} column {a!r}"
        seen: dict[str, str] = {}
        for attribute, template in match.items():
            where = f"match.{attribute} = {template.text!r}"
            for part in template.placeholders:
                wanted = column_base_name(part)[:MAX_NAME]
                if wanted != part:
                    raise self.error(where, "column", part=part, wanted=wanted)
                if part.lower() in taken:
                    raise self.error(where, "collides", part=part, owner=taken[part.lower()])
                first = seen.setdefault(part.lower(), part)
                if first != part:
                    raise self.error(where, "case", first=first, part=part)

    def _types(self, raw: object, match: Mapping[str, Template]) -> dict[str, str]:
        if not isinstance(raw, Mapping):
            raise self.error("types", "types", raw=raw)
        parts = sorted({n for t in match.values() for n in t.names})
        types = {}
        for part, kind in raw.items():
            if part not in parts:
                raise self.error(
                    f"types.{part}", "type_part", part=part, parts=", ".join(parts) or "none"
                )
            if not isinstance(kind, str) or kind.upper() not in PART_TYPES:
                raise self.error(f"types.{part}", "type", raw=kind)
            types[part] = kind.upper()
        for attribute, template in match.items():
            for part, after in zip(template.names, template.literals[1:], strict=True):
                kind = types.get(part, "")
                if after and after[0] in _ALWAYS_HOLDS.get(kind, ""):
                    where = f"match.{attribute} = {template.text!r}"
                    raise self.error(where, "never", kind=kind, char=after[0], part=part)
        return types
