"""The ``rule`` document kind: integration rules declared in metadata, checked and compiled
to ``Rule`` objects with the other documents, so a rule naming a missing entity, field,
action or template variable is a metadata problem at its file and line, found by
``loom metadata validate`` before anything runs.

Users live in the database, not in metadata: whether each rule's ``run_as`` names an
active user is checked by every publish (and by ``validate`` where there is an
instance), through the metadata service's publish checks (``check_run_as``).

Importing this module registers the kind (``loom.integrations.triggers`` imports it).
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from croniter import croniter
from jinja2 import TemplateSyntaxError, meta, nodes

from loom.expressions import BOOLEAN, Expression, ExpressionError, compile_expression
from loom.identity.models import User
from loom.integrations.actions import action_names
from loom.integrations.rules import Rule, Trigger
from loom.integrations.templates import ENVIRONMENT, VARIABLES, variables_of
from loom.metadata.documents import Document, Problem
from loom.metadata.entities import label
from loom.metadata.kinds import (
    Compilation,
    DocumentKind,
    named_changes,
    register_document_kind,
    schema_file,
)
from loom.metadata.model import STANDARD_FIELDS, AppModel, Entity
from loom.schema.service import add_publish_check

#: fields every record has, which a template may read as record.<name>
STANDARD_NAMES = frozenset(f.name for f in STANDARD_FIELDS)
_WEBHOOK = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}/[a-z0-9][a-z0-9_.-]{0,99}$")
_WAIT_UNITS = {"s": 1, "m": 60, "h": 3600}


def wait_seconds(text: str) -> int:
    """``"30s"``, ``"5m"``, ``"1h"`` -> seconds."""
    return int(text[:-1]) * _WAIT_UNITS[text[-1]]


def _closest(name: str, names: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class _RuleCompiler:
    """One rule document: its trigger, condition, action, mapping and principal."""

    def __init__(self, build: Compilation, doc: Document, model: AppModel):
        self.build, self.doc, self.model = build, doc, model
        self.data = doc.data
        #: the trigger's entity, where it has one that exists
        self.entity: Entity | None = None
        #: the template variables the rule's trigger gives (a webhook gives its call's body
        #: and headers, a record event and a schedule the record)
        self.variables: tuple[str, ...] = VARIABLES

    def fail(self, path: tuple, message: str) -> None:
        self.build.fail(self.doc, path, message)

    def rule(self) -> Rule:
        data = self.data
        trigger, condition = self.trigger(data["on"])
        self.variables = variables_of(trigger.event)
        action = data["action"]
        self.check_action(action)
        arguments = copy.deepcopy(data.get("with", {}))
        for path, text in _strings(arguments, ("with",)):
            self.check_template(path, text)
        run_as = data["run_as"]
        if len(run_as) > 150 or any(ch.isspace() for ch in run_as):
            self.fail(("run_as",), f"run_as must be a username (1 to 150 characters without spaces), not {run_as!r}")
        retry = data.get("retry", {})
        return Rule(
            name=data["name"], trigger=trigger, when=condition, action=action,
            arguments=MappingProxyType(arguments), run_as=run_as,
            max_attempts=retry.get("max_attempts", 8), backoff=retry.get("backoff", "exponential"),
            backoff_seconds=wait_seconds(retry.get("first_wait", "30s")),
            max_depth=data.get("max_depth", 3), enabled=data.get("enabled", True),
            label=label(data.get("label")), description=data.get("description", ""),
            file=self.doc.file, line=self.doc.line_of(()) or 0, run_as_line=self.doc.line_of(("run_as",)) or 0)

    # -- on: ----------------------------------------------------------------------------

    def trigger(self, on: Mapping[str, Any]) -> tuple[Trigger, Expression | None]:
        if "webhook" in on:
            webhook = on["webhook"]
            if not _WEBHOOK.match(webhook):
                self.fail(("on", "webhook"), f"webhook must be <plugin>/<name>, the address of a webhook a plugin "
                                             f"declares (/hooks/<plugin>/<name>), not {webhook!r}")
            return Trigger("webhook", webhook=webhook), None
        entity_name = on["entity"]
        self.entity = self.check_entity(entity_name)
        if "schedule" in on:
            cron = on["schedule"].strip()
            if not croniter.is_valid(cron):
                self.fail(("on", "schedule"), f"{cron!r} is not a cron expression: five fields, minute hour "
                                              "day-of-month month day-of-week, e.g. '0 8 * * 1-5'")
            condition = self.condition(("on", "filter"), on.get("filter"))
            return Trigger("schedule", entity_name, cron=cron), condition
        event = on["event"]
        changed = tuple(on.get("changed", ()))
        if changed and event != "updated":
            self.fail(("on", "changed"), f"changed is for event: updated only; a rule on {event} "
                                         "fires on every record it is triggered by")
            changed = ()
        elif self.entity is not None:
            for i, name in enumerate(changed):
                if name not in self.entity.all_fields:
                    self.fail(("on", "changed", i), f"no field named '{name}' in {entity_name}"
                                                    f"{_closest(name, self.entity.all_fields)}")
        condition = self.condition(("on", "when"), on.get("when"))
        if event == "state_entered":
            return Trigger(event, entity_name, state=on["state"]), condition
        return Trigger(event, entity_name, changed=changed), condition

    def check_entity(self, name: str) -> Entity | None:
        entity = self.model.entities.get(name)
        if entity is None:
            if name not in self.build.broken:
                self.fail(("on", "entity"), f"no entity named '{name}'{_closest(name, self.model.entities)}")
            return None
        if entity.child:
            parent = self.model.parents.get(name)
            where = f" (of {parent[0].name})" if parent else ""
            self.fail(("on", "entity"), f"'{name}' is a child entity{where}: its rows are saved with their parent "
                                        "record, so a rule is triggered by the parent")
            return None
        return entity

    def condition(self, path: tuple, text: str | None) -> Expression | None:
        if text is None or self.entity is None:
            return None
        try:
            return compile_expression(text, self.entity, self.model, expect=BOOLEAN)
        except ExpressionError as exc:
            for message in exc.messages:
                self.fail(path, f"{message} (in the expression {text!r})")
            return None

    # -- action and with: ----------------------------------------------------------------

    def check_action(self, name: str) -> None:
        names = action_names()
        if name in names:
            return
        hint = _closest(name, names) or f"; the actions are: {', '.join(names)}"
        self.fail(("action",), f"no action named '{name}' (an action a plugin adds is there only while the "
                               f"plugin is installed){hint}")

    def check_template(self, path: tuple, text: str) -> None:
        try:
            tree = ENVIRONMENT.parse(text)
            ENVIRONMENT.compile(tree)
        except TemplateSyntaxError as exc:
            where = f" at its line {exc.lineno}" if "\n" in text.strip() else ""
            self.fail(path, f"not a valid template{where}: {(exc.message or '').rstrip('.')} (in the template {text!r})")
            return
        for name in sorted(meta.find_undeclared_variables(tree)):
            if name not in self.variables:
                given = "a webhook" if "body" in self.variables else "a record event or a schedule"
                wrong = f" (a rule triggered by {given} has no {name})" if name in VARIABLES else ""
                self.fail(path, f"'{name}' is not a variable this rule's templates can read{wrong}; they can read "
                                f"{', '.join(self.variables)}{_closest(name, self.variables)}")
        if self.entity is None:
            return
        known = STANDARD_NAMES | set(self.entity.all_fields)
        for name in dict.fromkeys(_record_attributes(tree)):
            if name not in known:
                self.fail(path, f"record.{name}: no field named '{name}' in {self.entity.name}"
                                f"{_closest(name, known)}")


def _strings(value: Any, path: tuple) -> Iterator[tuple[tuple, str]]:
    """Every string inside ``value`` (a ``with`` mapping), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, path + (i,))


def _record_attributes(tree: nodes.Template) -> Iterator[str]:
    """The names a template reads from ``record``: ``record.name`` and ``record['name']``."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if not (isinstance(node.node, nodes.Name) and node.node.name == "record" and node.node.ctx == "load"):
            continue
        if isinstance(node, nodes.Getattr):
            yield node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield node.arg.value


def compile_rules(docs: list[Document], build: Compilation) -> dict[str, Rule]:
    """Every rule document, checked against the entities compiled before it and the
    actions registered now."""
    model = AppModel(MappingProxyType(dict(build.items("entity"))))
    return {name: _RuleCompiler(build, doc, model).rule() for name, doc in build.by_name(docs).items()}


def _comparable(rule: Rule) -> tuple:
    """A rule as two versions of it are compared: by what it says, not where it was read
    (the condition by its text: compiled expressions compare by identity)."""
    return (rule.trigger, rule.when.text if rule.when is not None else None, rule.action, rule.arguments,
            rule.run_as, rule.max_attempts, rule.backoff, rule.backoff_seconds, rule.max_depth, rule.enabled,
            rule.label, rule.description)


def diff_rules(old: Mapping[str, Rule], new: Mapping[str, Rule]) -> list[str]:
    """One line per rule added (+), removed (-) or changed (~)."""
    return named_changes("rule", {n: _comparable(r) for n, r in old.items()},
                         {n: _comparable(r) for n, r in new.items()})


RULE_KIND = DocumentKind("rule", schema_file("rule"), compile_rules, diff_rules, after=("entity", "role"))


# -- checks against the database -------------------------------------------------------------

users = User.__table__


def check_run_as(conn: sa.Connection, model: AppModel) -> list[Problem]:
    """Each enabled rule's ``run_as`` names an existing, active user (a publish check: a
    disabled rule may keep a user who is gone, so it can be switched off when its user is)."""
    rules = [rule for rule in model.of_kind("rule").values() if rule.enabled]
    if not rules:
        return []
    wanted = {rule.run_as for rule in rules}
    active = dict(conn.execute(sa.select(users.c.username, users.c.is_active)
                               .where(users.c.username.in_(wanted))).all())
    problems = []
    for rule in sorted(rules, key=lambda r: r.name):
        if rule.run_as not in active:
            why = f"there is no user named '{rule.run_as}': create it (loom user create) or name another"
        elif not active[rule.run_as]:
            why = f"the user '{rule.run_as}' is deactivated: reactivate it or name another"
        else:
            continue
        problems.append(Problem(rule.file, rule.run_as_line or rule.line or None, "run_as",
                                f"rule '{rule.name}' runs as a user who cannot act: {why}, "
                                "or set enabled: false"))
    return problems


register_document_kind(RULE_KIND)
add_publish_check(check_run_as)
