"""Business logic in entity metadata, compiled when the metadata is: a field's ``compute``,
``required_when``, ``visible_when``, ``read_only_when`` (where written as an expression)
and computed default (``{expression: ...}``, ``{from: link.field}``), an entity's ``rules``.
Each expression is checked against its entity; a problem becomes a metadata problem at the
file and line of the expression. Computed fields that read each other in a circle are
refused, and the others get the order they are computed in.

The metadata language cannot import this one, so this module registers itself with it
(``loom.metadata.entities.use_logic_compiler``) when ``loom.expressions`` is imported.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from loom.expressions.checker import field_value_type
from loom.expressions.errors import ExpressionError
from loom.expressions.expression import Expression, compile_expression
from loom.expressions.nodes import BOOLEAN, NULL, Path
from loom.expressions.rollups import check_circles, check_depends_on_links, resolve_rollup
from loom.metadata.documents import Document
from loom.metadata.entities import COMPUTABLE_TYPES, use_logic_compiler
from loom.metadata.kinds import Compilation
from loom.metadata.model import AppModel, Entity, Field


class _EntityLogic:
    """The expressions of one entity document."""

    def __init__(self, build: Compilation, doc: Document, entity: Entity, model: AppModel):
        self.build, self.doc, self.entity, self.model = build, doc, entity, model
        self.index_of = {raw["name"]: i for i, raw in enumerate(doc.data["fields"])}

    def compile(self, path: tuple, text: str, *, expect: str | None = None) -> Expression | None:
        try:
            return compile_expression(text, self.entity, self.model, expect=expect)
        except ExpressionError as exc:
            for message in exc.messages:
                self.build.fail(self.doc, path, f"{message} (in the expression {text!r})")
            return None

    def fits(self, path: tuple, f: Field, expression: Expression | None, what: str) -> Expression | None:
        """``expression`` if its value fits ``f``; else reported, None."""
        if expression is None:
            return None
        wanted, _whole = field_value_type(f)
        if expression.type not in (wanted, NULL):
            self.build.fail(self.doc, path, f"{what} gives {_article(expression.type)}, which a {f.type} field "
                                            f"cannot hold (it takes {_article(wanted or 'nothing')}); "
                                            f"change the expression or the field's type")
            return None
        return expression

    def field(self, f: Field) -> Field:
        at = ("fields", self.index_of[f.name])
        changes = {}
        if f.compute and f.type in COMPUTABLE_TYPES:
            changes["compute_expr"] = self.fits(at + ("compute",), f, self.compile(at + ("compute",), f.compute),
                                                f"'{f.compute}'")
        if f.required_when:
            changes["required_when_expr"] = self.compile(at + ("required_when",), f.required_when, expect=BOOLEAN)
        if f.visible_when:
            changes["visible_when_expr"] = self.compile(at + ("visible_when",), f.visible_when, expect=BOOLEAN)
        if isinstance(f.read_only_when, str):
            changes["read_only_when_expr"] = self.compile(at + ("read_only_when",), f.read_only_when,
                                                          expect=BOOLEAN)
        if f.default_expression:
            path = at + ("default", "expression")
            changes["default_expr"] = self.fits(path, f, self.compile(path, f.default_expression),
                                                f"'{f.default_expression}'")
        elif f.default_from:
            changes["default_expr"] = self.default_from(at + ("default", "from"), f)
        if f.rollup is not None:
            changes["rollup"] = resolve_rollup(self.problem, at + ("rollup",), self.entity, f, self.model)
        if f.depends_on_links:
            check_depends_on_links(self.problem, at + ("depends_on_links",), self.entity,
                                   dataclasses.replace(f, **changes), self.model)
        return dataclasses.replace(f, **changes) if changes else f

    def problem(self, path: tuple, message: str) -> None:
        self.build.fail(self.doc, path, message)

    def default_from(self, path: tuple, f: Field) -> Expression | None:
        text = f.default_from.strip()
        expression = self.compile(path, text)
        if expression is None:
            return None
        tree = expression.tree
        if not isinstance(tree, Path) or tree.user or len(tree.names) < 2:
            self.build.fail(self.doc, path, f"'from' names a field of a linked record, like "
                                            f"product.list_price, not {text!r}; for a computed default write "
                                            "{expression: ...}")
            return None
        return self.fits(path, f, expression, f"'{text}'")

    def rules(self) -> tuple:
        return tuple(dataclasses.replace(rule, when_expr=self.compile(("rules", i, "when"), rule.when, expect=BOOLEAN))
                     for i, rule in enumerate(self.entity.rules))

    def compute_order(self, fields: tuple[Field, ...]) -> tuple[str, ...]:
        """The computed fields, each after the computed fields it reads; a circle is reported."""
        reads = {f.name: [p for p in f.compute_expr.paths if "." not in p]
                 for f in fields if f.compute_expr is not None}
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                circle = trail[trail.index(name):] + [name]
                self.build.fail(self.doc, ("fields", self.index_of[name], "compute"),
                                f"computed fields read each other in a circle ({' -> '.join(circle)}); "
                                "one of them must be entered or computed from other fields")
                return
            state[name] = "visiting"
            for other in reads[name]:
                if other in reads:
                    visit(other, trail + [name])
            state[name] = "done"
            order.append(name)

        for name in reads:
            visit(name, [])
        return tuple(order)


def _article(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def compile_logic(build: Compilation, entities: dict[str, Entity], docs: dict[str, Document]) -> dict[str, Entity]:
    """Every entity with its expressions compiled (see the module's doc)."""
    model = AppModel(MappingProxyType(dict(entities)))
    result = {}
    for name, entity in entities.items():
        if not entity.has_logic:
            result[name] = entity
            continue
        logic = _EntityLogic(build, docs[name], entity, model)
        fields = tuple(logic.field(f) for f in entity.fields)
        result[name] = dataclasses.replace(entity, fields=fields, rules=logic.rules(),
                                           compute_order=logic.compute_order(fields))
    check_circles(build, result, docs)
    return result


use_logic_compiler(compile_logic)
