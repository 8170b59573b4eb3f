"""The screens say errors in the interface language by their code and params: a form in
Chinese shows Chinese beside each field, a refusal is said whole, labels come from the
metadata, and a code the screens do not know shows its message as it is."""

from __future__ import annotations

import pytest
from flask_babel import force_locale

from loom.errors import NotFound, error_entry
from loom.ui.messages import detail_text, message_text, refusal_text

from .conftest import CSRF, PASSWORD, sign_in

ZH = lambda en, cn: {"en": en, "zh": cn}  # noqa: E731


@pytest.fixture
def stores(apply_metadata, make_entity, make_user, loom_app):
    apply_metadata(
        make_entity("store", [
            {"name": "name", "type": "string", "label": ZH("Name", "名称"), "required": True, "max_length": 8},
            {"name": "staff", "type": "integer", "label": ZH("Staff", "员工数"), "min": 1, "max": 500},
            {"name": "mobile", "type": "phone", "label": ZH("Mobile", "手机"), "validators": ["cn_mobile"]},
        ], title_field="name", label=ZH("Store", "门店")),
        {"kind": "role", "name": "viewer", "permissions": {"store": {"actions": ["read"]}}},
    )
    make_user("keeper", superuser=True, password=PASSWORD)
    make_user("viewer", roles=["viewer"], password=PASSWORD)
    return loom_app


def chinese(app, username):
    client = sign_in(app, username)
    assert client.post("/language", {"locale": "zh_CN", "next": "/"}).status_code == 303
    client.token = CSRF.search(client.get("/").get_data(as_text=True)).group(1)
    return client


def test_a_chinese_form_says_each_fields_error_in_chinese(stores):
    keeper = chinese(stores, "keeper")
    page = keeper.post("/r/store/new", {"name": "A very long name", "staff": "0", "mobile": "12345"})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "最多 8 个字符。" in html
    assert "必须在 1 与 500 之间。" in html
    assert "手机号为 11 位数字，以 1 开头（例如 13812345678）。" in html
    assert "at most 8 characters" not in html and "must be between" not in html
    missing = keeper.post("/r/store/new", {"name": ""}).get_data(as_text=True)
    assert "此字段为必填项。" in missing


def test_a_refusal_is_said_whole_with_the_labels_of_the_metadata(stores):
    keeper = chinese(stores, "keeper")
    created = keeper.post("/r/store/new", {"name": "East"})
    assert created.status_code == 303, created.get_data(as_text=True)
    store = int(created.headers["Location"].rstrip("/").split("/")[-1])
    viewer = chinese(stores, "viewer")
    refused = viewer.post(f"/r/store/{store}/delete", {"version": "1"})
    assert refused.status_code == 403
    assert "您无权删除门店记录。" in refused.get_data(as_text=True)
    missing = keeper.get("/r/store/999999", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "没有编号为 999999 的门店记录，或您无权查看。" in missing


def test_the_sentence_comes_from_the_code_not_the_english(stores):
    with stores.app_context(), force_locale("zh_CN"):
        # the message's wording does not matter: the code and its params do
        assert message_text(error_entry("name", "too_long", "whatever the English says", max=5)) == "最多 5 个字符。"
        assert message_text(error_entry("staff", "not_between", "", min=1, max=9)) == "必须在 1 与 9 之间。"
        assert message_text(error_entry("", "forbidden_action", "", action="update", entity="store")) == \
            "您无权修改门店记录。"
        # a code the screens do not know (a plugin's): its message as it is
        assert message_text(error_entry("x", "plugin_says_no", "not on Sundays")) == "not on Sundays"
        # a code that names only a kind of error: said in Chinese unless already Chinese
        assert message_text(error_entry("x", "invalid", "not on Sundays")) == "此值无效。"
        assert message_text(error_entry("x", "invalid", "周日不行")) == "周日不行"
        assert detail_text(NotFound("there is no store with id 7", code="no_such_record",
                                    params={"entity": "store", "id": 7})) == "没有编号为 7 的门店记录，或您无权查看。"
        # params that do not fit the sentence leave the message as it is, never a failure
        assert message_text(error_entry("x", "too_long", "at most 5 characters")) == "at most 5 characters"
        assert refusal_text(405) == "此网址不接受这种请求。"
    with stores.app_context(), force_locale("en"):
        assert message_text(error_entry("name", "too_long", "at most 5 characters", max=5)) == "At most 5 characters."
        assert message_text(error_entry("x", "invalid", "not on Sundays")) == "not on Sundays"
        assert refusal_text(405) == ""
