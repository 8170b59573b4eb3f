"""The API guide's examples run as written against the demo metadata, as the demo user
they name: a client copying them gets the reply the guide shows."""

from __future__ import annotations

import json
import re
import shlex
from importlib.resources import as_file, files
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture
def demo_metadata(loom_app):
    loom = loom_app.extensions["loom"]
    with as_file(files("loom.seed").joinpath("crm")) as folder:
        loom.metadata.apply(loom.metadata.load_directory(folder), author="test")


def _example(marker: str) -> tuple[dict[str, str], str, str, str, dict]:
    """The curl command and the JSON reply that follow ``marker`` in the guide: (headers,
    method, path, body, reply)."""
    text = GUIDE.read_text(encoding="utf-8")
    command, reply = re.findall(r"```(?:sh|json)\n(.*?)```", text[text.index(marker):], re.S)[:2]
    words = shlex.split(command.replace("\\\n", " "))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    method = words[words.index("-X") + 1]
    url = next(w for w in words if w.startswith("http"))
    return headers, method, re.sub(r"^https?://[^/]+", "", url), words[words.index("-d") + 1], json.loads(reply)


def test_the_create_example_works_for_the_demo_sales_rep(loom_app, demo_metadata, make_user, client_for):
    wang = make_user("wang", roles=["sales_rep"], team="shanghai")
    loom_app.extensions["loom"].identity.update_user(wang, {"display_name": "王芳 Wang Fang"}, actor="test")
    headers, method, path, body, reply = _example("A sales rep of the demo")
    headers.pop("Authorization")  # the client sends wang's own token
    response = client_for("wang").open(path, method=method, data=body.encode(), headers=headers)
    assert response.status_code == 201, response.get_json()
    record = response.get_json()["data"]
    shown = {k: v for k, v in reply["data"].items() if k not in ("...", "id", "created_at")}
    shown["owner"] = {**shown["owner"], "id": wang}  # the guide's ids are an instance's own
    assert {k: record[k] for k in shown} == shown
    assert record["version"] == 1


def test_demo_help_texts_promise_no_approval_the_demo_does_not_have():
    folder = files("loom.seed").joinpath("crm")
    texts = [entry.read_text(encoding="utf-8") for entry in folder.iterdir() if entry.name.endswith(".yaml")]
    # help texts are the indented "en:"/"zh:" lines of a help block
    helps = [line.strip() for text in texts for line in text.splitlines() if re.match(r"\s+(en|zh): ", line)]
    assert len(helps) > 10
    # no approval flow runs in the demo yet: no help text may say that something needs one
    assert [line for line in helps if "approval" in line or "审批" in line] == []
