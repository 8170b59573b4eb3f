"""``compile_expression``: text in, a checked ``Expression`` out, ready to evaluate in
Python or to compile to SQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.sql.elements import ColumnElement

from loom.expressions.checker import Checker, unify
from loom.expressions.errors import ExpressionError
from loom.expressions.evaluator import Evaluation, Lookup, user_properties
from loom.expressions.functions import Moment
from loom.expressions.grammar import parse
from loom.expressions.nodes import BOOLEAN, TYPES, Node
from loom.expressions.sql import Resolver, SqlCompilation
from loom.metadata.model import AppModel, Entity


@dataclass(frozen=True, eq=False)
class Expression:
    """A checked expression over the records of one entity."""

    text: str
    #: what it gives: number, text, boolean, date, datetime (or null for the literal null)
    type: str
    #: the field paths it reads, in order of appearance ("quantity", "customer.credit_limit")
    paths: tuple[str, ...]
    #: reads the acting user ($user...)
    uses_user: bool
    #: reads today() or now(): its value changes with time
    uses_today: bool
    entity: str
    tree: Node

    def evaluate(self, record: Any, *, user: Any = None, today: dt.date | None = None,
                 now: dt.datetime | None = None, lookup: Lookup | None = None) -> Any:
        """The value for one record (a mapping of field names to the values the record
        service stores). ``user``: a ``Principal`` or a mapping of $user properties;
        ``lookup(entity_name, id)``: the linked record (a mapping) or None, needed for
        paths through links."""
        evaluation = Evaluation(record, user_properties(user), _moment(today, now), lookup)
        return evaluation.value(self.tree)

    def to_sql(self, resolve: Resolver, *, user: Any = None, today: dt.date | None = None,
               now: dt.datetime | None = None) -> ColumnElement:
        """The expression as a SQLAlchemy element for SQLite or PostgreSQL. ``resolve(path)``
        gives each field path's SQL value (``table_resolver`` makes one for entity tables);
        ``user``, ``today`` and ``now`` are bound as parameters."""
        return SqlCompilation(resolve, user_properties(user), _moment(today, now)).result(self.tree)


def _moment(today: dt.date | None, now: dt.datetime | None) -> Moment:
    now = dt.datetime.now(dt.UTC) if now is None else now
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return Moment(today=now.date() if today is None else today, now=now.astimezone(dt.UTC))


def compile_expression(text: str, entity: Entity, model: AppModel, *, expect: str | None = None) -> Expression:
    """Parse and check ``text`` against ``entity``; ``ExpressionError`` lists every problem.
    ``expect``: the type the result must have (``"boolean"`` for a condition)."""
    if expect is not None and expect not in TYPES:
        raise ValueError(f"expect must be one of {', '.join(TYPES)}, not {expect!r}")
    tree = parse(text)
    checker = Checker(entity, model)
    kind = checker.check(tree)
    if kind is not None and expect is not None and unify(kind, expect) != expect:
        if expect == BOOLEAN:
            checker.errors.append(f"this must be a condition (true or false), but it gives {_article(kind)}: "
                                  "compare it, e.g. x > 0")
        else:
            checker.errors.append(f"this must give {_article(expect)}, but it gives {_article(kind)}")
    if checker.errors:
        raise ExpressionError(checker.errors, text)
    return Expression(text=text, type=kind, paths=tuple(dict.fromkeys(checker.paths)), uses_user=checker.uses_user,
                      uses_today=checker.uses_today, entity=entity.name, tree=tree)


def _article(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
