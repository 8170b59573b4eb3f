"""Integration rules as metadata (``kind: rule``): a rule over generated entities compiles
to the ``Rule`` the triggers and the worker read; every mistake an admin can make in one
(a missing entity, field, action or template variable, a bad cron, a user who cannot act)
is one problem at its file and line, found before anything runs."""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass, field

import pytest
import yaml
from click.testing import CliRunner

import loom.integrations.rule_kind  # noqa: F401  (registers the rule kind)
from loom import hookimpl
from loom.cli import main
from loom.errors import MetadataError
from loom.integrations.actions import Action, action_names, unregister_action
from loom.integrations.rules import Rule, Trigger
from loom.metadata import load_and_compile, load_text

WORDS = ("amount", "quantity", "weight", "score", "title", "note", "code", "region", "stage", "rating",
         "city", "volume", "margin", "due_on", "urgent", "paid", "label_text", "budget", "priority", "level")
NUMBER_TYPES = ("integer", "money", "percent")
TEXT_TYPES = ("string", "text", "email")


@dataclass
class Shape:
    """A generated entity and which of its fields have which expression type."""

    name: str
    doc: dict
    numbers: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        return [f["name"] for f in self.doc["fields"]]


def make_shape(rng: random.Random, name: str, link_to: str | None = None) -> Shape:
    """An entity of random fields: at least one number, one text, one boolean and one select."""
    suffix = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(2))
    names = [f"{word}_{suffix}" for word in rng.sample(WORDS, 7)]
    shape = Shape(name, {"kind": "entity", "name": name, "fields": []})
    kinds = ["number", "text", "flag", "choice"] + [rng.choice(["number", "text", "flag", "choice"]) for _ in range(3)]
    rng.shuffle(kinds)
    for field_name, kind in zip(names, kinds, strict=True):
        if kind == "number":
            raw = {"name": field_name, "type": rng.choice(NUMBER_TYPES)}
            shape.numbers.append(field_name)
        elif kind == "text":
            raw = {"name": field_name, "type": rng.choice(TEXT_TYPES)}
            shape.texts.append(field_name)
        elif kind == "flag":
            raw = {"name": field_name, "type": "boolean"}
            shape.flags.append(field_name)
        else:
            values = rng.sample(["draft", "open", "approved", "closed", "lost", "won"], 3)
            raw = {"name": field_name, "type": "select", "options": [{"value": v} for v in values]}
            shape.choices[field_name] = values
            shape.texts.append(field_name)
        shape.doc["fields"].append(raw)
    if link_to is not None:
        shape.doc["fields"].append({"name": "parent_" + link_to, "type": "link", "target": link_to})
    return shape


def shapes(seed: int) -> list[Shape]:
    rng = random.Random(seed)
    first = make_shape(rng, f"ent{seed}_a")
    return [first, make_shape(rng, f"ent{seed}_b", link_to=first.name)]


def write_app(tmp_path, entities: list[dict], rules_text: str, *, folder: str = "app"):
    app = tmp_path / folder
    (app / "rules").mkdir(parents=True, exist_ok=True)
    (app / "entities.yaml").write_text(yaml.safe_dump_all(entities, allow_unicode=True), encoding="utf-8")
    (app / "rules" / "rules.yaml").write_text(textwrap.dedent(rules_text).lstrip("\n"), encoding="utf-8")
    return app


def problems_of(tmp_path, entities: list[dict], rules_text: str) -> list[str]:
    with pytest.raises(MetadataError) as refused:
        load_and_compile(write_app(tmp_path, entities, rules_text))
    return [str(p) for p in refused.value.problems]


# -- valid rules compile to what the triggers and the worker read ---------------------------------


@pytest.mark.parametrize("seed", [1, 7, 42, 2026])
def test_rules_over_generated_entities_compile_to_rule_objects(tmp_path, seed):
    rng = random.Random(seed * 31)
    parent, child = shapes(seed)
    number, text, flag = rng.choice(child.numbers), rng.choice(child.texts), rng.choice(child.flags)
    choice, values = next(iter(child.choices.items()))
    watched = rng.sample(child.fields, 2)
    rules = f"""
    kind: rule
    name: push_{child.name}
    label: {{en: Push, zh: 推送}}
    description: Sends every approved record to the ERP.
    on: {{entity: {child.name}, event: updated, changed: [{watched[0]}, {watched[1]}], when: "{choice} = '{values[0]}' and {number} > 10"}}
    action: http.request
    with:
      url: "https://erp.example/{{{{ record.id }}}}"
      body:
        amount: "{{{{ record.{number} }}}}"
        note: "{{{{ record['{text}'] }}}} by {{{{ record.owner }}}} at {{{{ now }}}}"
        lines: ["{{% for name, change in changes.items() %}}{{{{ name }}}}{{% endfor %}}", 3, true, null]
        parent: "{{{{ record.parent_{parent.name} }}}}"
        since: "{{{{ record.created_at }}}} {{{{ record.updated_by }}}} {{{{ record.version }}}}"
      token: "{{{{ settings.token }}}} {{{{ rule }}}} {{{{ delivery.idempotency_key }}}}"
      plain: no template here
    run_as: integration_bot
    retry: {{max_attempts: 12, backoff: fixed, first_wait: 5m}}
    max_depth: 0
    ---
    kind: rule
    name: new_{parent.name}
    on: {{entity: {parent.name}, event: created}}
    action: record.create
    run_as: bot@example.com
    ---
    kind: rule
    name: morning_{child.name}
    enabled: false
    on: {{schedule: "0 8 * * 1-5", entity: {child.name}, filter: "{flag} = true"}}
    action: record.update
    with: {{id: "{{{{ record.id }}}}", {flag}: false}}
    run_as: scheduler
    retry: {{first_wait: 1h}}
    ---
    kind: rule
    name: hook_{seed}
    on: {{webhook: loom_erp/orders}}
    action: http.request
    with: {{echo: "{{{{ delivery.id }}}}"}}
    run_as: hooks
    ---
    kind: rule
    name: entered_{seed}
    on: {{entity: {parent.name}, event: state_entered, state: approved, when: "{parent.numbers[0]} >= 0"}}
    action: http.request
    run_as: hooks
    """
    model = load_and_compile(write_app(tmp_path, [parent.doc, child.doc], rules))
    compiled = model.of_kind("rule")
    assert set(compiled) == {f"push_{child.name}", f"new_{parent.name}", f"morning_{child.name}",
                             f"hook_{seed}", f"entered_{seed}"}

    push = compiled[f"push_{child.name}"]
    assert isinstance(push, Rule)
    assert push.trigger == Trigger("updated", child.name, changed=tuple(watched))
    assert push.when.text == f"{choice} = '{values[0]}' and {number} > 10" and push.when.type == "boolean"
    assert push.when.evaluate({choice: values[0], number: 11}) is True
    assert push.when.evaluate({choice: values[0], number: 10}) is False
    assert push.action == "http.request" and push.run_as == "integration_bot"
    assert push.arguments["url"] == "https://erp.example/{{ record.id }}"
    assert push.arguments["body"]["lines"][1:] == [3, True, None] and push.arguments["plain"] == "no template here"
    assert (push.max_attempts, push.backoff, push.backoff_seconds, push.max_depth) == (12, "fixed", 300, 0)
    assert push.enabled and dict(push.label) == {"en": "Push", "zh": "推送"}
    assert push.description == "Sends every approved record to the ERP."
    assert (push.file, push.line, push.run_as_line) == ("rules/rules.yaml", 1, 17)
    # it fires on an update of a watched field only, and on nothing else
    assert push.fires_on("updated", child.name, {watched[1], "other"})
    assert not push.fires_on("updated", child.name, set(child.fields) - set(watched))
    assert not push.fires_on("created", child.name) and not push.fires_on("updated", parent.name, set(watched))

    created = compiled[f"new_{parent.name}"]
    assert created.trigger == Trigger("created", parent.name) and created.when is None
    assert dict(created.arguments) == {} and created.run_as == "bot@example.com"
    assert (created.max_attempts, created.backoff, created.backoff_seconds, created.max_depth) == (8, "exponential",
                                                                                                   30, 3)
    assert created.fires_on("created", parent.name) and not created.fires_on("deleted", parent.name)

    morning = compiled[f"morning_{child.name}"]
    assert morning.trigger == Trigger("schedule", child.name, cron="0 8 * * 1-5")
    assert morning.when.text == f"{flag} = true" and not morning.enabled and morning.backoff_seconds == 3600
    assert dict(morning.arguments) == {"id": "{{ record.id }}", flag: False}

    hook = compiled[f"hook_{seed}"]
    assert hook.trigger == Trigger("webhook", webhook="loom_erp/orders") and hook.when is None

    entered = compiled[f"entered_{seed}"]
    assert entered.trigger == Trigger("state_entered", parent.name, state="approved")
    assert entered.when.paths == (parent.numbers[0],)


# -- every mistake is one problem at its file and line --------------------------------------------

PARENT, CHILD = shapes(5)
NUMBER, TEXT, FLAG = CHILD.numbers[0], CHILD.texts[0], CHILD.flags[0]

#: (what is wrong, the rule's text, "line: path", a part of the message)
BAD_RULES = [
    ("no such entity", "on: {entity: shipmnt, event: created}", "3: on.entity", "no entity named 'shipmnt'"),
    ("a changed field that does not exist",
     f"on: {{entity: {CHILD.name}, event: updated, changed: [{NUMBER}, ghost_field]}}", "3: on.changed[1]",
     f"no field named 'ghost_field' in {CHILD.name}"),
    ("changed on a create", f"on: {{entity: {CHILD.name}, event: created, changed: [{NUMBER}]}}", "3: on.changed",
     "changed is for event: updated only"),
    ("changed on a delete", f"on: {{entity: {CHILD.name}, event: deleted, changed: [{NUMBER}]}}", "3: on.changed",
     "changed is for event: updated only"),
    ("a condition that is not true or false", f"on: {{entity: {CHILD.name}, event: created, when: \"{NUMBER} + 1\"}}",
     "3: on.when", "this must be a condition (true or false), but it gives a number"),
    ("a condition on a missing field", f"on: {{entity: {CHILD.name}, event: updated, when: \"ghost_field > 1\"}}",
     "3: on.when", "ghost_field"),
    ("a condition that does not parse", f"on: {{entity: {CHILD.name}, event: created, when: \"{NUMBER} >\"}}",
     "3: on.when", f"(in the expression '{NUMBER} >')"),
    ("a condition of a flow state on a missing field",
     f"on: {{entity: {CHILD.name}, event: state_entered, state: approved, when: \"ghost_field = 1\"}}",
     "3: on.when", "ghost_field"),
    ("a flow state of a missing entity", "on: {entity: nowhere, event: state_entered, state: approved}",
     "3: on.entity", "no entity named 'nowhere'"),
    ("a schedule filter that is not a condition",
     f"on: {{schedule: '0 8 * * *', entity: {CHILD.name}, filter: \"{TEXT}\"}}", "3: on.filter",
     "this must be a condition (true or false), but it gives a text"),
    ("a schedule over a missing entity", "on: {schedule: '0 8 * * *', entity: nowhere}", "3: on.entity",
     "no entity named 'nowhere'"),
    ("a cron expression out of range", f"on: {{schedule: '61 8 * * *', entity: {CHILD.name}}}", "3: on.schedule",
     "'61 8 * * *' is not a cron expression: five fields"),
    ("a webhook that is no plugin/name", "on: {webhook: orders}", "3: on.webhook",
     "webhook must be <plugin>/<name>"),
    ("an action nobody registered, close to one", f"on: {{entity: {CHILD.name}, event: created}}\naction: http.reqest",
     "4: action", "no action named 'http.reqest' (an action a plugin adds is there only while the plugin is "
                  "installed); did you mean 'http.request'?"),
    ("an action nobody registered", f"on: {{entity: {CHILD.name}, event: created}}\naction: nope.nothing_here",
     "4: action", "no action named 'nope.nothing_here' (an action a plugin adds is there only while the plugin is "
                  "installed); the actions are: http.request, "),
    ("a template that does not parse, deep in with",
     f"on: {{entity: {CHILD.name}, event: created}}\nwith:\n  body:\n    items:\n      - ok\n      - \"{{{{ record.id \"",
     "8: with.body.items[1]", "not a valid template: unexpected end of template"),
    ("a template block never closed", f"on: {{entity: {CHILD.name}, event: created}}\nwith: {{x: \"{{% if true %}}a\"}}",
     "4: with.x", "not a valid template: "),
    ("a filter nobody has", f"on: {{entity: {CHILD.name}, event: created}}\nwith: {{x: \"{{{{ record.id | shout }}}}\"}}",
     "4: with.x", "No filter named 'shout'"),
    ("a template variable a rule cannot read",
     f"on: {{entity: {CHILD.name}, event: created}}\nwith: {{x: \"{{{{ customer.name }}}}\"}}", "4: with.x",
     "'customer' is not a variable this rule's templates can read; they can read record, changes, rule, delivery, "
     "now, settings"),
    ("a webhook's body in a rule on a record event",
     f"on: {{entity: {CHILD.name}, event: created}}\nwith: {{x: \"{{{{ body.id }}}}\"}}", "4: with.x",
     "'body' is not a variable this rule's templates can read (a rule triggered by a record event or a schedule "
     "has no body)"),
    ("a record in a rule on a webhook",
     "on: {webhook: shop/paid}\nwith: {x: \"{{ record.id }}\"}", "4: with.x",
     "'record' is not a variable this rule's templates can read (a rule triggered by a webhook has no record); "
     "they can read body, headers, rule, delivery, now, settings"),
    ("a variable misspelt", "on: {webhook: erp/orders}\nwith: {x: \"{{ settngs.token }}\"}", "4: with.x",
     "did you mean 'settings'?"),
    ("a field of the record that does not exist",
     f"on: {{entity: {CHILD.name}, event: created}}\nwith: {{x: \"id {{{{ record.ghost_field }}}}\"}}", "4: with.x",
     f"record.ghost_field: no field named 'ghost_field' in {CHILD.name}"),
    ("a field of the record by subscript", f"on: {{entity: {CHILD.name}, event: created}}\n"
                                           f"with: {{x: [\"{{{{ record['ghost_field'] }}}}\"]}}",
     "4: with.x[0]", f"record.ghost_field: no field named 'ghost_field' in {CHILD.name}"),
    ("a field of another entity", f"on: {{entity: {PARENT.name}, event: created}}\n"
                                  f"with: {{x: \"{{{{ record.{CHILD.fields[0]} }}}}\"}}",
     "4: with.x", f"no field named '{CHILD.fields[0]}' in {PARENT.name}"),
    ("a username with a space", f"on: {{entity: {CHILD.name}, event: created}}\nrun_as: integration bot",
     "4: run_as", "run_as must be a username (1 to 150 characters without spaces), not 'integration bot'"),
    ("a child entity", "on: {entity: ticket_line, event: created}", "3: on.entity",
     "'ticket_line' is a child entity (of ticket): its rows are saved with their parent record"),
]

TICKETS = [{"kind": "entity", "name": "ticket", "fields": [{"name": "lines", "type": "table", "target": "ticket_line"}]},
           {"kind": "entity", "name": "ticket_line", "child": True, "fields": [{"name": "note", "type": "string"}]}]


def _rule(body: str) -> str:
    """A rule document with ``body`` from its third line on; what ``body`` leaves out is valid."""
    text = f"kind: rule\nname: broken\n{body}\n"
    if "\naction:" not in text:
        text += "action: http.request\n"
    if "\nrun_as:" not in text:
        text += "run_as: integration_bot\n"
    return text


@pytest.mark.parametrize(("body", "where", "message"), [case[1:] for case in BAD_RULES],
                         ids=[case[0] for case in BAD_RULES])
def test_each_mistake_is_one_problem_at_its_file_and_line(tmp_path, body, where, message):
    # a valid rule first, so the broken one's lines count from the second document
    valid = _rule(f"on: {{entity: {CHILD.name}, event: created}}").replace("name: broken", "name: fine")
    text = valid + "---\n" + _rule(body)
    offset = valid.count("\n") + 1
    found = problems_of(tmp_path, [PARENT.doc, CHILD.doc, *TICKETS], text)
    assert len(found) == 1, found
    line, path = where.split(": ")
    assert found[0].startswith(f"rules/rules.yaml:{int(line) + offset}: {path}: "), found
    assert message in found[0], found


def test_every_problem_of_every_rule_is_reported_at_once(tmp_path):
    found = problems_of(tmp_path, [PARENT.doc, CHILD.doc], f"""
    kind: rule
    name: one
    on: {{entity: nowhere, event: created}}
    action: nope.nothing
    with: {{a: "{{{{ record.anything }}}}"}}
    run_as: bot
    ---
    kind: rule
    name: one
    on: {{entity: {CHILD.name}, event: created}}
    action: http.request
    run_as: bot
    """)
    # the record is not checked where the entity is missing: one problem says what to fix
    assert found == [
        "rules/rules.yaml:9: name: rule 'one' is already declared in rules/rules.yaml:2",
        "rules/rules.yaml:3: on.entity: no entity named 'nowhere'",
        "rules/rules.yaml:4: action: no action named 'nope.nothing' (an action a plugin adds is there only "
        f"while the plugin is installed); the actions are: {', '.join(action_names())}",
    ]
    assert {"http.request", "record.create", "record.update"} <= set(action_names())


def test_a_rule_on_an_entity_that_failed_its_schema_is_not_reported_twice(tmp_path):
    broken = {**CHILD.doc, "fields": [*CHILD.doc["fields"], {"name": "bad", "type": "strng"}]}
    found = problems_of(tmp_path, [PARENT.doc, broken], f"""
    kind: rule
    name: fine
    on: {{entity: {CHILD.name}, event: updated, changed: [{NUMBER}], when: "{NUMBER} > 1"}}
    action: http.request
    run_as: bot
    """)
    assert len(found) == 1 and found[0].startswith("entities.yaml:") and "'strng' is not one of" in found[0]


# -- the JSON Schema -----------------------------------------------------------------------------

#: (a rule document's text, "line: path: message")
SCHEMA_CASES = [
    ("kind: rule\nname: r\non: {webhook: a/b}\naction: http.request\nrun_as: bot\nretries: 3\n",
     "1: (document): Additional properties are not allowed ('retries' was unexpected)"),
    ("kind: rule\nname: r\non: {entity: e, event: changed}\naction: http.request\nrun_as: bot\n",
     "3: on.event: 'changed' is not one of ['created', 'updated', 'deleted', 'state_entered']"),
    ("kind: rule\nname: r\non: {entity: e, event: created, condition: 'x > 1'}\naction: http.request\nrun_as: bot\n",
     "3: on: Additional properties are not allowed ('condition' was unexpected)"),
    ("kind: rule\nname: r\non: {webhook: a/b, when: 'x > 1'}\naction: http.request\nrun_as: bot\n",
     "3: on: Additional properties are not allowed ('when' was unexpected)"),
    ("kind: rule\nname: r\non: {schedule: '0 8 * * *', entity: e, when: 'x'}\naction: http.request\nrun_as: bot\n",
     "3: on: Additional properties are not allowed ('when' was unexpected)"),
    ("kind: rule\nname: r\non: {schedule: '0 8 * * *'}\naction: http.request\nrun_as: bot\n",
     "3: on: 'entity' is a required property"),
    ("kind: rule\nname: r\non: {schedule: '0 0 8 * * *', entity: e}\naction: http.request\nrun_as: bot\n",
     "3: on.schedule: '0 0 8 * * *' does not match"),
    ("kind: rule\nname: r\non: {entity: e, event: state_entered}\naction: http.request\nrun_as: bot\n",
     "3: on: 'state' is a required property"),
    ("kind: rule\nname: r\non: {entity: e, event: created, state: x}\naction: http.request\nrun_as: bot\n",
     "3: on: Additional properties are not allowed ('state' was unexpected)"),
    ("kind: rule\nname: r\non: {entity: e}\naction: http.request\nrun_as: bot\n",
     "3: on: 'event' is a required property"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: http.request\nrun_as: bot\n"
     "retry: {max_attempts: 51}\n", "6: retry.max_attempts: 51 is greater than the maximum of 50"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: http.request\nrun_as: bot\n"
     "retry: {backoff: linear}\n", "6: retry.backoff: 'linear' is not one of ['exponential', 'fixed']"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: http.request\nrun_as: bot\n"
     "retry: {first_wait: 30 seconds}\n", "6: retry.first_wait: '30 seconds' does not match"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: http.request\nrun_as: bot\n"
     "retry: {jitter: true}\n", "6: retry: Additional properties are not allowed ('jitter' was unexpected)"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: http.request\nrun_as: bot\nmax_depth: 11\n",
     "6: max_depth: 11 is greater than the maximum of 10"),
    ("kind: rule\nname: Push-Orders\non: {entity: e, event: created}\naction: http.request\nrun_as: bot\n",
     "2: name: 'Push-Orders' does not match"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: push\nrun_as: bot\n",
     "4: action: 'push' does not match"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: http.request\n",
     "1: (document): 'run_as' is a required property"),
    ("kind: rule\nname: r\non: {entity: e, event: created}\naction: http.request\nrun_as: bot\nenabled: maybe\n",
     "6: enabled: 'maybe' is not of type 'boolean'"),
]


@pytest.mark.parametrize(("text", "expected"), SCHEMA_CASES, ids=[c[1] for c in SCHEMA_CASES])
def test_the_schema_refuses_unknown_keys_and_values_with_a_clear_message(text, expected):
    documents, problems = load_text(text, "rule.yaml")
    assert documents == []
    assert len(problems) == 1 and str(problems[0]).startswith(f"rule.yaml:{expected}"), problems


def test_on_is_a_key_in_yaml_not_a_boolean():
    documents, problems = load_text("kind: rule\nname: r\non: {webhook: a/b}\naction: http.request\nrun_as: bot\n")
    assert problems == [] and documents[0].data["on"] == {"webhook": "a/b"}


# -- whom a rule runs as: checked by every publish -------------------------------------------------


def _run_as_app(tmp_path, run_as: str, *, enabled: bool = True, folder: str = "app", entities=(PARENT.doc, CHILD.doc)):
    rules = f"""
    kind: rule
    name: push_{CHILD.name}
    enabled: {str(enabled).lower()}
    on: {{entity: {CHILD.name}, event: updated, changed: [{NUMBER}]}}
    action: http.request
    with: {{amount: "{{{{ record.{NUMBER} }}}}"}}
    run_as: {run_as}
    """
    return write_app(tmp_path, list(entities), rules, folder=folder)


def test_publish_refuses_a_rule_whose_user_is_missing_or_deactivated(loom_app, make_user, tmp_path):
    service = loom_app.extensions["loom"].metadata
    identity = loom_app.extensions["loom"].identity
    model = service.load_directory(_run_as_app(tmp_path, "erp_bot"))
    with pytest.raises(MetadataError) as refused:
        service.apply(model, author="test")
    assert [str(p) for p in refused.value.problems] == [
        f"rules/rules.yaml:7: run_as: rule 'push_{CHILD.name}' runs as a user who cannot act: there is no user "
        "named 'erp_bot': create it (loom user create) or name another, or set enabled: false"]
    assert service.live().number == 0  # nothing was published
    assert [str(p) for p in service.plan(model).problems] == [str(p) for p in refused.value.problems]

    # a user with a name that differs in case only is another user
    make_user("ERP_BOT")
    with pytest.raises(MetadataError, match="there is no user named 'erp_bot'"):
        service.apply(model, author="test")

    bot = make_user("erp_bot")
    plan = service.apply(model, author="test")
    assert plan.to_version == 1 and f"+ rule push_{CHILD.name}" in plan.summary
    live = service.live().model.of_kind("rule")[f"push_{CHILD.name}"]
    assert live.run_as == "erp_bot" and live.when is None
    # the same files again change nothing: a rule compares by what it says
    assert service.apply(service.load_directory(_run_as_app(tmp_path, "erp_bot")), author="test").is_empty

    identity.update_user(bot, {"is_active": False}, actor="test")
    # any later publish is refused while an enabled rule runs as a deactivated user
    grown = {**CHILD.doc, "fields": [*CHILD.doc["fields"], {"name": "extra", "type": "string"}]}
    changed = service.load_directory(_run_as_app(tmp_path, "erp_bot", folder="grown", entities=(PARENT.doc, grown)))
    with pytest.raises(MetadataError) as refused:
        service.apply(changed, author="test")
    assert [str(p) for p in refused.value.problems] == [
        f"rules/rules.yaml:7: run_as: rule 'push_{CHILD.name}' runs as a user who cannot act: the user 'erp_bot' "
        "is deactivated: reactivate it or name another, or set enabled: false"]
    assert service.live().number == 1

    # switched off, the rule may keep its user; so can its user come back
    plan = service.apply(service.load_directory(_run_as_app(tmp_path, "erp_bot", enabled=False, folder="off")),
                         author="test")
    assert plan.to_version == 2 and plan.summary == (f"~ rule push_{CHILD.name}",)
    identity.update_user(bot, {"is_active": True}, actor="test")
    assert service.apply(model, author="test").to_version == 3


def test_publish_through_stored_documents_checks_whom_rules_run_as(loom_app, make_user, apply_metadata):
    rule = {"kind": "rule", "name": "new_parent", "on": {"entity": PARENT.name, "event": "created"},
            "action": "record.create", "with": {"entity": CHILD.name}, "run_as": "creator"}
    with pytest.raises(MetadataError) as refused:
        apply_metadata(PARENT.doc, CHILD.doc, rule)
    assert [str(p) for p in refused.value.problems] == [
        "<stored>: run_as: rule 'new_parent' runs as a user who cannot act: there is no user named 'creator': "
        "create it (loom user create) or name another, or set enabled: false"]
    make_user("creator")
    assert apply_metadata(PARENT.doc, CHILD.doc, rule).to_version == 1


@pytest.fixture
def loom_cli(loom_database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "cli-test")
    runner = CliRunner()

    def run(*args: str, code: int = 0, stdin: str | None = None):
        result = runner.invoke(main, list(args), input=stdin, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    return run


def test_validate_checks_whom_rules_run_as_where_there_is_an_instance(loom_cli, tmp_path):
    app = _run_as_app(tmp_path, "erp_bot")
    # no instance: what the files say is checked, users cannot be
    assert "ok: 2 entities in 3 documents" in loom_cli("metadata", "validate", str(app))
    loom_cli("init")
    output = loom_cli("metadata", "validate", str(app), code=1)
    assert (f"error: rules/rules.yaml:7: run_as: rule 'push_{CHILD.name}' runs as a user who cannot act: "
            "there is no user named 'erp_bot'") in output
    loom_cli("user", "create", "erp_bot", stdin="a-long-password-1\n")
    assert "ok: 2 entities in 3 documents" in loom_cli("metadata", "validate", str(app))


# -- an action a plugin adds ---------------------------------------------------------------------


def notify_shop(call):
    return None


class ShopPlugin:
    """A plugin adding one action rules can name."""

    @hookimpl
    def rule_actions(self):
        return [Action("shop.notify", notify_shop, description="Tell the shop")]


@pytest.fixture
def loom_plugins():
    yield [ShopPlugin()]
    unregister_action("shop.notify")


def test_a_rule_may_name_an_action_a_plugin_adds_and_the_live_version_loads_with_it(loom_app, make_user, tmp_path):
    service = loom_app.extensions["loom"].metadata
    rules = f"""
    kind: rule
    name: tell_shop
    on: {{entity: {PARENT.name}, event: deleted}}
    action: shop.notify
    with: {{gone: "{{{{ record.id }}}}"}}
    run_as: shop_bot
    """
    make_user("shop_bot")
    plan = service.apply(service.load_directory(write_app(tmp_path, [PARENT.doc, CHILD.doc], rules)), author="test")
    assert "+ rule tell_shop" in plan.summary
    # another process reads the stored version and compiles it again, with the plugin's action
    fresh = type(service)(service.engine)
    assert fresh.live().model.of_kind("rule")["tell_shop"].action == "shop.notify"

    unregister_action("shop.notify")
    found = problems_of(tmp_path / "without", [PARENT.doc, CHILD.doc], rules)
    assert len(found) == 1 and found[0].startswith(
        "rules/rules.yaml:4: action: no action named 'shop.notify' (an action a plugin adds is there only while "
        "the plugin is installed)")
