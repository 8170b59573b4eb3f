"""Roll-ups and ``depends_on_links`` in entity metadata, compiled with the other business
logic (``loom.expressions.logic``): a roll-up's source resolves (a table field of the
entity, or a link of another entity pointing at it), its aggregate fits the field that
holds it, its ``where`` is a condition on the source entity; a computed field marked
``depends_on_links`` reads something through a link. Then, across entities, the fields
that recompute one another must not do so in a circle: a change would never settle.

``dependencies`` gives, for one compiled model, what the record service needs at every
write to know which records to recompute (``loom.records.derived``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from loom.expressions.checker import field_value_type
from loom.expressions.errors import ExpressionError
from loom.expressions.expression import compile_expression
from loom.expressions.nodes import BOOLEAN, DATE, DATETIME, NUMBER, TEXT
from loom.metadata.documents import Document
from loom.metadata.kinds import Compilation
from loom.metadata.model import USER_ENTITY, AppModel, Entity, Field, Rollup

#: field types a sum or an average can be taken of, and held in
NUMERIC = frozenset({"integer", "decimal", "money", "percent"})
#: field types a count can be held in
COUNTABLE = frozenset({"integer", "decimal"})

Fail = Callable[[tuple, str], None]


def resolve_rollup(fail: Fail, at: tuple, entity: Entity, f: Field, model: AppModel) -> Rollup | None:
    """``f``'s roll-up with its source resolved and its where compiled; None (reported
    through ``fail(path, message)``) when it cannot be used."""
    assert f.rollup is not None
    found = _source(fail, at + ("from",), entity, f.rollup, model)
    if found is None:
        return None
    source, rollup = found
    ok = _aggregate_fits(fail, at + (rollup.aggregate,), f, rollup, source)
    where_expr = None
    if rollup.where:
        try:
            where_expr = compile_expression(rollup.where, source, model, expect=BOOLEAN)
        except ExpressionError as exc:
            for message in exc.messages:
                fail(at + ("where",), f"{message} (in the roll-up's where {rollup.where!r}, on {source.name})")
            return None
    return dataclasses.replace(rollup, where_expr=where_expr) if ok else None


def _source(fail: Fail, at: tuple, entity: Entity, rollup: Rollup,
            model: AppModel) -> tuple[Entity, Rollup] | None:
    """The source entity of a roll-up, and the roll-up told which table or link it reads."""
    how = "'from' is a table field of this entity (lines) or entity.link_field (service_ticket.customer)"
    if "." not in rollup.source:
        table = entity.all_fields.get(rollup.source)
        if table is None or table.type != "table" or table.target not in model.entities:
            what = "no field" if table is None else f"a {table.type} field"
            fail(at, f"'{rollup.source}' is {what} of {entity.name}, not a table field; {how}")
            return None
        return model.entity(table.target), dataclasses.replace(rollup, table=table.name, entity=table.target)
    name, link = rollup.source.split(".", 1)
    source = model.entities.get(name)
    if source is None:
        fail(at, f"no entity named '{name}' to roll up from; {how}")
        return None
    f = source.all_fields.get(link)
    if f is None:
        fail(at, f"no field named '{link}' in {name}; name its link field that points at {entity.name}")
        return None
    if f.type != "link" or f.target != entity.name:
        what = f"a link to {f.target}" if f.type == "link" else f"a {f.type} field"
        fail(at, f"'{name}.{link}' is {what}, not a link to {entity.name}: a roll-up counts the records "
                 f"whose link points at this {entity.name}")
        return None
    return source, dataclasses.replace(rollup, link=link, entity=name)


def _aggregate_fits(fail: Fail, at: tuple, f: Field, rollup: Rollup, source: Entity) -> bool:
    """Whether the aggregate can be taken of its field and held in ``f``; reported if not."""
    if rollup.aggregate == "count":
        if f.type not in COUNTABLE:
            fail(at, f"count gives a whole number, which {_article(f.type)} field does not hold: make "
                     f"'{f.name}' an integer or decimal field")
            return False
        return True
    aggregated = source.all_fields.get(rollup.field or "")
    if aggregated is None:
        fail(at, f"no field named '{rollup.field}' in {source.name} to take the {rollup.aggregate} of")
        return False
    if rollup.aggregate in ("sum", "avg"):
        if aggregated.type not in NUMERIC:
            fail(at, f"'{rollup.field}' is a {aggregated.type} field; {rollup.aggregate} takes a number field "
                     f"({', '.join(sorted(NUMERIC))})")
            return False
        if f.type not in NUMERIC:
            fail(at, f"{rollup.aggregate} gives a number, which {_article(f.type)} field does not hold: make "
                     f"'{f.name}' a number field ({', '.join(sorted(NUMERIC))})")
            return False
        return True
    kind, _whole = field_value_type(aggregated) if aggregated.stored else (None, False)
    if aggregated.type == "link" or kind not in (NUMBER, TEXT, DATE, DATETIME):
        fail(at, f"'{rollup.field}' is a {aggregated.type} field; {rollup.aggregate} takes a number, text, "
                 "date or date-time field")
        return False
    if field_value_type(f)[0] != kind:
        fail(at, f"the {rollup.aggregate} of '{rollup.field}' is {_article(kind)}, which {_article(f.type)} field "
                 f"does not hold: give '{f.name}' the type of '{rollup.field}' ({aggregated.type})")
        return False
    return True


def check_depends_on_links(fail: Fail, at: tuple, entity: Entity, f: Field, model: AppModel) -> None:
    """``depends_on_links`` needs a computed field reading a record's field through a link."""
    if f.compute_expr is None:
        return
    if entity.child:
        fail(at, "child rows are written whole with their parent and recomputed then; depends_on_links "
                 "cannot recompute them on their own: drop it")
        return
    if not any(hops for hops in (link_hops(entity, path, model) for path in f.compute_expr.paths)):
        fail(at, f"'{f.compute}' reads no field of another record through a link (like "
                 "customer.credit_limit); depends_on_links follows such paths: drop it")


def link_hops(entity: Entity, path: str, model: AppModel) -> list[tuple[str, str]]:
    """The records a path reads through links, as (entity, field read there) per hop:
    ``customer.region.rate`` on ticket -> [(customer, region), (region, rate)]. A hop
    into a user ends it (users are not records whose changes recompute anything)."""
    names = path.split(".")
    hops = []
    current = entity
    for i, name in enumerate(names[:-1]):
        f = current.all_fields.get(name)
        if f is None or f.type != "link" or f.target == USER_ENTITY or f.target not in model.entities:
            break
        current = model.entity(f.target)
        hops.append((current.name, names[i + 1]))
    return hops


# -- what recomputes what ------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkRollups:
    """The roll-ups of ``parent`` over records of ``source`` through ``link``."""

    parent: str
    source: str
    link: str
    fields: tuple[Field, ...]
    #: the source's fields whose change changes a roll-up (the link, the aggregated
    #: fields, the first field of each path the where conditions read)
    inputs: frozenset[str]


@dataclass(frozen=True)
class LinkDependency:
    """Records of ``dependent`` whose ``fields`` read, through the links of ``chain``, the
    field ``reads`` of ``entity``: ``chain`` is [(dependent, link), (entity 1, link), ...]
    ending at the record before ``entity``."""

    entity: str
    reads: str
    dependent: str
    chain: tuple[tuple[str, str], ...]
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Dependencies:
    """Per entity: the link roll-ups it is the source of, and the records that read it
    through links with ``depends_on_links``."""

    rollups_from: Mapping[str, tuple[LinkRollups, ...]]
    read_by: Mapping[str, tuple[LinkDependency, ...]]
    #: parent entity -> its table fields whose child rows are the source of link roll-ups
    #: (order lines summed per product): those change when the parent is written
    through_rows: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def concern(self, entity: str) -> bool:
        return entity in self.rollups_from or entity in self.read_by or entity in self.through_rows

    def rollups_through(self, entity: str) -> tuple[str, ...]:
        """``entity``'s table fields whose rows are rolled up by another entity."""
        return tuple(self.through_rows.get(entity, ()))


def _first_names(expression: Any) -> set[str]:
    return {p.split(".", 1)[0] for p in expression.paths} if expression is not None else set()


def dependencies(model: AppModel) -> Dependencies:
    """What recomputes what in ``model`` (see ``loom.records.derived``)."""
    groups: dict[tuple[str, str, str], list[Field]] = {}
    for entity in model.entities.values():
        for f in entity.rollups:
            rollup = f.rollup
            if rollup is not None and rollup.link is not None and rollup.entity is not None:
                groups.setdefault((entity.name, rollup.entity, rollup.link), []).append(f)
    rollups_from: dict[str, list[LinkRollups]] = {}
    for (parent, source, link), fields in groups.items():
        inputs = {link}
        for f in fields:
            assert f.rollup is not None
            inputs |= {f.rollup.field} if f.rollup.field else set()
            inputs |= _first_names(f.rollup.where_expr)
        rollups_from.setdefault(source, []).append(LinkRollups(parent, source, link, tuple(fields),
                                                                frozenset(inputs)))
    read_by: dict[tuple[str, str, str, tuple], list[str]] = {}
    for entity in model.entities.values():
        for f in entity.fields:
            if not f.depends_on_links or f.compute_expr is None:
                continue
            for path in f.compute_expr.paths:
                names = path.split(".")
                chain = [(entity.name, names[0])]
                for j, (hop, reads) in enumerate(link_hops(entity, path, model)):
                    key = (hop, reads, entity.name, tuple(chain))
                    if f.name not in read_by.setdefault(key, []):
                        read_by[key].append(f.name)
                    chain.append((hop, names[j + 1]))
    by_entity: dict[str, list[LinkDependency]] = {}
    for (hop, reads, dependent, chain), names in read_by.items():
        by_entity.setdefault(hop, []).append(LinkDependency(hop, reads, dependent, chain, tuple(names)))
    through_rows: dict[str, list[str]] = {}
    for child in rollups_from:
        if child in model.parents:
            parent, table_field = model.parents[child]
            through_rows.setdefault(parent.name, []).append(table_field.name)
    return Dependencies({k: tuple(v) for k, v in rollups_from.items()}, {k: tuple(v) for k, v in by_entity.items()},
                        {k: tuple(v) for k, v in through_rows.items()})


# -- circles --------------------------------------------------------------------------------------

def edges(model: AppModel) -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    """(input, field) for every field Loom fills from others: what it reads in its own
    record, and, for roll-ups and ``depends_on_links``, in other records."""
    for entity in model.entities.values():
        for f in entity.fields:
            node = (entity.name, f.name)
            if f.compute_expr is not None:
                for path in f.compute_expr.paths:
                    yield (entity.name, path.split(".", 1)[0]), node
                    if f.depends_on_links:
                        for hop in link_hops(entity, path, model):
                            yield hop, node
            rollup = f.rollup
            if rollup is None or rollup.entity is None:
                continue
            if rollup.table:
                yield (entity.name, rollup.table), node
            for name in {rollup.link or "", rollup.field or ""} | _first_names(rollup.where_expr):
                if name:
                    yield (rollup.entity, name), node


def check_circles(build: Compilation, entities: Mapping[str, Entity], docs: Mapping[str, Document]) -> None:
    """Refuse roll-ups and ``depends_on_links`` fields that recompute one another in a
    circle (a circle of computed fields within one record is reported by ``compute_order``)."""
    model = AppModel(dict(entities))
    graph: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for source, target in edges(model):
        graph.setdefault(source, set()).add(target)
    reported: set[tuple[str, str]] = set()
    for entity in entities.values():
        for f in entity.fields:
            node = (entity.name, f.name)
            if not (f.rollup or f.depends_on_links) or node in reported:
                continue
            trail = _path_back(graph, node)
            if trail is None:
                continue
            reported.update(trail)
            key = "rollup" if f.rollup else "depends_on_links"
            index = next(i for i, raw in enumerate(docs[entity.name].data["fields"]) if raw["name"] == f.name)
            circle = " -> ".join(f"{e}.{n}" for e, n in [*trail, node])
            build.fail(docs[entity.name], ("fields", index, key),
                       f"roll-ups and computed fields recompute each other in a circle ({circle}): a change "
                       "would never settle; break the circle (drop one of the roll-ups, or depends_on_links)")


def _path_back(graph: Mapping[tuple[str, str], set[tuple[str, str]]],
               start: tuple[str, str]) -> list[tuple[str, str]] | None:
    """A path from ``start`` along the graph back to ``start`` (its nodes), or None."""
    seen: set[tuple[str, str]] = set()
    stack: list[tuple[tuple[str, str], list[tuple[str, str]]]] = [(start, [start])]
    while stack:
        node, trail = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return trail
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, trail + [nxt]))
    return None


def _article(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
