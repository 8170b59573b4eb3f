"""A new record's audit entry is made in one pass over the record (``_masked_created``):
it must log exactly what masking its changes from nothing logged (``created_changes``
then ``_masked``), in the same order, for every kind of value: empty ones left out,
links by id, secrets masked, child rows with their secrets masked."""

from __future__ import annotations

import itertools

from loom.records.auditing import _NOT_LOGGED, RecordAudit, created_changes


class _Live:
    def derive(self, _key, factory):
        return factory()


class _Audit(RecordAudit):
    def __init__(self, plan):
        self._plan = plan
        self.context = type("Context", (), {"live": _Live()})()
        self.entity = type("Entity", (), {"name": "visit"})()

    def _audit_plan(self):
        return self._plan


def outcome(make):
    try:
        made = make()
    except Exception as exc:  # noqa: BLE001 - the error type is the outcome compared
        return type(exc)
    return made, list(made)


VALUES = [None, "", "x", [], ["x"], 0, 0.0, False, True, {}, {"id": 3, "title": "T"}, {"id": None, "title": "T"},
          {"id": 1, "title": 2, "z": 3}, {"id": 1}]
ROWS = [[{"pin": "1", "note": {"id": 2, "title": "x"}}, {"pin": None, "note": ""}], [{"note": None}]]


def test_a_new_records_entry_logs_what_its_masked_changes_from_nothing_log():
    audit = _Audit({"plain": "", "door_code": "secret", "lines": ["pin"], "link": "", **dict.fromkeys(_NOT_LOGGED)})
    checked = 0
    for plain, lines, secret, link in itertools.product(VALUES, VALUES + ROWS, VALUES, VALUES):
        record = {"id": 7, "plain": plain, "lines": lines, "door_code": secret, "link": link, "unplanned": plain,
                  "version": 1, "created_by": {"id": 1, "title": "admin"}}
        assert outcome(lambda r=record: audit._masked_created(r)) == \
            outcome(lambda r=record: audit._masked(created_changes(r))), record
        checked += 1
    assert checked == len(VALUES) ** 3 * (len(VALUES) + len(ROWS))
    made = audit._masked_created({"id": 7, "plain": "a", "door_code": "1234", "lines": ROWS[0], "version": 1})
    assert made == {"plain": [None, "a"], "door_code": [None, "***"],
                    "lines": [None, [{"pin": "***", "note": 2}, {"pin": None, "note": ""}]]}
