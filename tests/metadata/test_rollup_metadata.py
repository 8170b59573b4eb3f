"""Roll-ups and ``depends_on_links`` in entity metadata: checked when the metadata is
published, each problem at its file and line, naming the field and what to change."""

from __future__ import annotations

import pytest

import loom.expressions  # noqa: F401  (registers the compiler of entity expressions)
from loom.errors import MetadataError
from loom.expressions.rollups import dependencies
from loom.metadata import compile_documents, load_text

BASE = """
kind: entity
name: customer
fields:
  - {name: name, type: string}
  - {name: credit_limit, type: money}
---
kind: entity
name: product
fields:
  - {name: name, type: string}
---
kind: entity
name: service_ticket
fields:
  - {name: subject, type: string}
  - {name: customer, type: link, target: customer}
  - {name: product, type: link, target: product}
  - {name: status, type: string}
  - {name: hours, type: decimal}
  - {name: opened, type: date}
  - {name: urgent, type: boolean}
---
"""


def _compile(text: str):
    docs, problems = load_text(BASE + text, "crm.yaml")
    assert problems == []
    return compile_documents(docs)


def _problems(text: str) -> list[str]:
    docs, problems = load_text(BASE + text, "crm.yaml")
    if problems:
        return [str(p) for p in problems]
    with pytest.raises(MetadataError) as caught:
        compile_documents(docs)
    return [str(p) for p in caught.value.problems]


def _account(*fields: str, extra: str = "") -> str:
    return "kind: entity\nname: account\nfields:\n  - {name: name, type: string}\n" + \
        "".join(f"  - {f}\n" for f in fields) + extra


def test_rollups_compile_with_their_source_where_and_dependencies():
    text = BASE.replace(
        "  - {name: credit_limit, type: money}\n",
        "  - {name: credit_limit, type: money}\n"
        "  - {name: open_tickets, type: integer, rollup: {from: service_ticket.customer, count: true, "
        "where: \"status != 'closed'\"}}\n"
        "  - {name: hours, type: money, rollup: {from: service_ticket.customer, sum: hours}}\n"
        "  - {name: busy, type: boolean, compute: \"open_tickets > 2\"}\n").replace(
        "  - {name: urgent, type: boolean}\n",
        "  - {name: urgent, type: boolean}\n"
        "  - {name: credit_left, type: money, compute: \"customer.credit_limit - hours\", depends_on_links: true}\n")
    docs, problems = load_text(text + """
kind: entity
name: order
fields:
  - {name: lines_total, type: money, rollup: {from: lines, sum: amount}}
  - {name: total, type: money, compute: "lines_total * 2"}
  - {name: lines, type: table, target: line}
---
kind: entity
name: line
child: true
fields:
  - {name: quantity, type: integer}
  - {name: amount, type: money, compute: "quantity * 2"}
""", "crm.yaml")
    assert problems == []
    model = compile_documents(docs)
    order = model.entity("order")
    lines_total = order.field("lines_total")
    assert lines_total.read_only and (lines_total.rollup.table, lines_total.rollup.entity) == ("lines", "line")
    assert order.compute_order == ("total",) and order.has_logic
    customer = model.entity("customer")
    open_tickets = customer.field("open_tickets").rollup
    assert (open_tickets.entity, open_tickets.link, open_tickets.table) == ("service_ticket", "customer", None)
    assert open_tickets.where_expr.paths == ("status",)
    assert open_tickets.text == "count() of service_ticket.customer where status != 'closed'"
    assert customer.field("open_tickets").read_only
    assert customer.field("credit_limit").rollup is None
    found = dependencies(model)
    [group] = found.rollups_from["service_ticket"]
    assert group.parent == "customer" and {f.name for f in group.fields} == {"open_tickets", "hours"}
    assert group.inputs == {"customer", "status", "hours"}
    [dependency] = found.read_by["customer"]
    assert (dependency.reads, dependency.dependent, dependency.fields) == ("credit_limit", "service_ticket",
                                                                          ("credit_left",))
    assert "order" not in found.rollups_from and "line" not in found.rollups_from  # child rows: the write's own


@pytest.mark.parametrize(("field", "message"), [
    ("{name: n, type: integer, rollup: {from: nothing.customer, count: true}}",
     "fields[1].rollup.from: no entity named 'nothing' to roll up from; 'from' is a table field of this entity "
     "(lines) or entity.link_field (service_ticket.customer)"),
    ("{name: n, type: integer, rollup: {from: name, count: true}}",
     "fields[1].rollup.from: 'name' is a string field of account, not a table field"),
    ("{name: n, type: integer, rollup: {from: tickets, count: true}}",
     "fields[1].rollup.from: 'tickets' is no field of account, not a table field"),
    ("{name: n, type: integer, rollup: {from: service_ticket.customer, count: true}}",
     "fields[1].rollup.from: 'service_ticket.customer' is a link to customer, not a link to account: a roll-up "
     "counts the records whose link points at this account"),
    ("{name: n, type: integer, rollup: {from: service_ticket.subject, count: true}}",
     "fields[1].rollup.from: 'service_ticket.subject' is a string field, not a link to account"),
    ("{name: n, type: integer, rollup: {from: service_ticket.acount, count: true}}",
     "fields[1].rollup.from: no field named 'acount' in service_ticket; name its link field that points at account"),
    ("{name: n, type: money, rollup: {from: service_ticket.account, sum: hours_spent}}",
     "fields[1].rollup.sum: no field named 'hours_spent' in service_ticket to take the sum of"),
    ("{name: n, type: money, rollup: {from: service_ticket.account, count: true}}",
     "fields[1].rollup.count: count gives a whole number, which a money field does not hold: make 'n' an "
     "integer or decimal field"),
    ("{name: n, type: money, rollup: {from: service_ticket.account, sum: subject}}",
     "fields[1].rollup.sum: 'subject' is a string field; sum takes a number field (decimal, integer, money, "
     "percent)"),
    ("{name: n, type: string, rollup: {from: service_ticket.account, avg: hours}}",
     "fields[1].rollup.avg: avg gives a number, which a string field does not hold: make 'n' a number field"),
    ("{name: n, type: integer, rollup: {from: service_ticket.account, max: opened}}",
     "fields[1].rollup.max: the max of 'opened' is a date, which an integer field does not hold: give 'n' the "
     "type of 'opened' (date)"),
    ("{name: n, type: integer, rollup: {from: service_ticket.account, min: urgent}}",
     "fields[1].rollup.min: 'urgent' is a boolean field; min takes a number, text, date or date-time field"),
    ("{name: n, type: integer, rollup: {from: service_ticket.account, min: hours, max: hours}}",
     "fields[1].rollup: a roll-up takes exactly one aggregate (sum: field, count: true, min: field, max: field "
     "or avg: field), not min and max"),
    ("{name: n, type: integer, rollup: {from: service_ticket.account}}",
     "fields[1].rollup: a roll-up takes exactly one aggregate (sum: field, count: true, min: field, max: field "
     "or avg: field), not none"),
    ("{name: n, type: integer, rollup: {from: service_ticket.account, count: true, where: \"stauts = 'x'\"}}",
     "fields[1].rollup.where: no field 'stauts' in service_ticket (did you mean 'status'?)"),
    ("{name: n, type: integer, rollup: {from: service_ticket.account, count: true, where: \"hours + 1\"}}",
     "fields[1].rollup.where: this must be a condition (true or false), but it gives a number"),
    ("{name: n, type: boolean, rollup: {from: service_ticket.account, count: true}}",
     "fields[1].rollup: a boolean field cannot hold a roll-up; roll-ups are date, datetime, decimal, integer, "
     "money, percent, string, text fields"),
    ("{name: n, type: integer, compute: \"1 + 1\", rollup: {from: service_ticket.account, count: true}}",
     "fields[1].compute: a roll-up field cannot also be computed: Loom fills it in from the records it rolls "
     "up; drop 'compute' or 'rollup'"),
    ("{name: n, type: integer, default: 3, rollup: {from: service_ticket.account, count: true}}",
     "fields[1].default: a roll-up field cannot have a default"),
    ("{name: n, type: integer, required: true, rollup: {from: service_ticket.account, count: true}}",
     "fields[1].required: a roll-up field cannot be required"),
    ("{name: n, type: integer, depends_on_links: true}",
     "fields[1].depends_on_links: depends_on_links applies to a computed field: add compute (an expression "
     "reading through a link) or drop it"),
])
def test_every_rollup_mistake_names_the_field_and_the_fix(field, message):
    # tickets link to accounts too, so that service_ticket.account is a fitting source
    text = BASE.replace("  - {name: urgent, type: boolean}\n",
                        "  - {name: urgent, type: boolean}\n  - {name: account, type: link, target: account}\n")
    text += _account(field)
    docs, problems = load_text(text, "crm.yaml")
    assert problems == []
    with pytest.raises(MetadataError) as caught:
        compile_documents(docs)
    found = [str(p) for p in caught.value.problems]
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if field in text_line)
    assert any(p.startswith(f"crm.yaml:{line}: {message}") for p in found), found


def test_child_rows_can_be_rolled_up_by_the_record_they_link_to():
    model = _compile("""
kind: entity
name: order
fields:
  - {name: lines, type: table, target: line}
---
kind: entity
name: line
child: true
fields:
  - {name: product, type: link, target: product}
  - {name: quantity, type: integer}
---
kind: entity
name: stock
fields:
  - {name: name, type: string}
---
kind: entity
name: product_sales
fields:
  - {name: product, type: link, target: product}
""")
    assert model.entity("stock").rollups == ()
    docs, problems = load_text(BASE.replace("  - {name: name, type: string}\n---\nkind: entity\nname: service_ticket",
                                            "  - {name: name, type: string}\n"
                                            "  - {name: sold, type: integer, rollup: {from: line.product, sum: quantity}}\n"
                                            "---\nkind: entity\nname: service_ticket") + """
kind: entity
name: order
fields:
  - {name: lines, type: table, target: line}
---
kind: entity
name: line
child: true
fields:
  - {name: product, type: link, target: product}
  - {name: quantity, type: integer}
""", "crm.yaml")
    assert problems == []
    model = compile_documents(docs)
    sold = model.entity("product").field("sold").rollup
    assert (sold.entity, sold.link) == ("line", "product")
    found = dependencies(model)
    assert found.rollups_through("order") == ("lines",) and found.concern("order")


def test_depends_on_links_needs_a_path_through_a_link():
    problems = _problems("""
kind: entity
name: invoice
fields:
  - {name: amount, type: money}
  - {name: customer, type: link, target: customer}
  - {name: doubled, type: money, compute: "amount * 2", depends_on_links: true}
  - {name: mine, type: integer, compute: "owner.team", depends_on_links: true}
  - {name: left, type: money, compute: "customer.credit_limit - amount", depends_on_links: true}
""")
    text = "\n".join(problems)
    assert "fields[2].depends_on_links: 'amount * 2' reads no field of another record through a link (like " \
           "customer.credit_limit); depends_on_links follows such paths: drop it" in text
    assert "fields[3].depends_on_links: 'owner.team' reads no field of another record" in text
    assert "fields[4]" not in text
    child = _problems("""
kind: entity
name: order
fields:
  - {name: lines, type: table, target: line}
---
kind: entity
name: line
child: true
fields:
  - {name: customer, type: link, target: customer}
  - {name: left, type: money, compute: "customer.credit_limit", depends_on_links: true}
""")
    assert any("fields[1].depends_on_links: child rows are written whole with their parent" in p for p in child)


def test_rollups_that_recompute_each_other_in_a_circle_are_refused():
    problems = _problems("""
kind: entity
name: team
fields:
  - {name: name, type: string}
  - {name: score, type: money, rollup: {from: player.team, sum: share}}
---
kind: entity
name: player
fields:
  - {name: team, type: link, target: team}
  - {name: share, type: money, compute: "team.score / 10", depends_on_links: true}
""")
    assert any("fields[1].rollup: roll-ups and computed fields recompute each other in a circle "
               "(team.score -> player.share -> team.score)" in p for p in problems), problems
    # a roll-up of a tree over its own field
    problems = _problems("""
kind: entity
name: node
fields:
  - {name: parent, type: link, target: node}
  - {name: total, type: integer, rollup: {from: node.parent, sum: total}}
""")
    assert any("fields[1].rollup: roll-ups and computed fields recompute each other in a circle "
               "(node.total -> node.total)" in p for p in problems), problems
    # without depends_on_links the player's share is recomputed only with the player: no circle
    _compile("""
kind: entity
name: team
fields:
  - {name: name, type: string}
  - {name: score, type: money, rollup: {from: player.team, sum: share}}
---
kind: entity
name: player
fields:
  - {name: team, type: link, target: team}
  - {name: share, type: money, compute: "team.score / 10"}
""")
    # a tree summing another field of its records is fine
    _compile("""
kind: entity
name: node
fields:
  - {name: parent, type: link, target: node}
  - {name: size, type: integer}
  - {name: children_size, type: integer, rollup: {from: node.parent, sum: size}}
""")


@pytest.mark.parametrize("rollup", [
    "{from: service_ticket.customer, count: 2}",
    "{from: service_ticket.customer, total: hours}",
    "{count: true}",
    "{from: 'service_ticket.customer.more', count: true}",
])
def test_the_json_schema_refuses_a_malformed_rollup(rollup):
    docs, problems = load_text(BASE + _account(f"{{name: n, type: integer, rollup: {rollup}}}"), "crm.yaml")
    assert problems, rollup
    assert all("fields[1]" in str(p) for p in problems)
