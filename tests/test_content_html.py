"""``format=html`` on the single-recipient recommendation routes: the placement's content
block from a Jinja2 template, text escaped, only http(s) URLs in ``href``/``src``, the
fallback flag visible; JSON stays the default; a custom template folder by setting."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_api import CUSTOMERS, EVENTS, ITEMS, NOW, SCORES, Clock, FakeModel, keyed_client

from features import contract as c
from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.api.app import create_app
from serving.api.artifacts import RecommendationService
from serving.api.content_html import PACKAGED_TEMPLATES, ContentRenderer, http_url
from serving.api.deps import get_emails, get_now, get_recommender, get_scores, get_state
from serving.api.email_index import EmailIndex
from serving.api.schemas import RecipientRecommendations
from serving.api.scores import ScoreIndex
from serving.api.state_reader import FastStateReader
from serving.context import RecContext
from serving.placements import load_placements
from serving.state import SQLiteStateStore

EVIL_TITLE = '<script>alert("x")</script> & "quotes"'


class _Tags(HTMLParser):
    """Start tags with their attributes, and the text, of an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


def _items():
    items = ITEMS.copy()
    items.loc[0, c.TITLE] = EVIL_TITLE  # I1, ranked first for every known customer
    items.loc[1, c.URL] = "javascript:alert(1)"  # I2
    items.loc[1, c.IMAGE_URL] = " JaVaScRiPt:alert(2)"
    items.loc[2, c.URL] = "java\tscript:alert(3)"  # I3: browsers strip the tab
    items.loc[2, c.IMAGE_URL] = "data:image/png;base64,AAAA"
    items.loc[3, c.URL] = "/relative/I4"  # I4
    items.loc[3, c.IMAGE_URL] = "//cdn.example.com/I4.jpg"
    return items


def _client(tmp_path: Path, settings: Settings | None = None):
    pq.write_table(SCORES, tmp_path / "scores.parquet")
    scores = ScoreIndex.open(tmp_path / "scores.parquet", tmp_path / "cache")
    context = RecContext.from_events(NOW, CUSTOMERS, _items(), EVENTS)
    state = FastStateReader(SQLiteStateStore(tmp_path / "state.sqlite"))
    service = RecommendationService(
        context, FakeModel(CUSTOMERS[c.CUSTOMER_ID]), load_placements(), state
    )
    app = create_app(settings or Settings(home=tmp_path / "home"))
    app.dependency_overrides.update(
        {
            get_scores: lambda: scores,
            get_recommender: lambda: service,
            get_state: lambda: state,
            get_emails: lambda: EmailIndex(CUSTOMERS),
            get_now: Clock(),
        }
    )
    return keyed_client(app)


@pytest.fixture()
def client(tmp_path):
    with _client(tmp_path) as cl:
        yield cl


def _html(client, cid: str, **params) -> str:
    r = client.get(
        f"/v1/customers/{cid}/recommendations", params={"n": 4, "format": "html", **params}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def test_html_escapes_the_title_and_drops_non_http_urls(client):
    html = _html(client, "C1")
    assert "<script>" not in html and "&lt;script&gt;" in html
    page = _Tags(html)
    (block,) = page.named("div")[:1]
    assert block["data-placement"] == "newsletter" and block["data-fallback"] == "false"
    assert block["data-eligible"] == "true"
    items = [a["data-item-id"] for a in page.named("div") if "data-item-id" in a]
    assert items == ["I1", "I2", "I3", "I4"]
    assert EVIL_TITLE in page.text  # shown as text, decoded by the parser
    # only I1's own http(s) links survive; I2..I4's javascript:, data:, relative are dropped
    assert [a["href"] for a in page.named("a")] == ["https://shop/I1"]
    assert [a["src"] for a in page.named("img")] == ["https://img/I1.jpg"]
    assert [a["alt"] for a in page.named("img")] == [EVIL_TITLE]
    assert "javascript" not in html.lower() and "data:image" not in html
    assert "Item 2" in page.text  # the title stays, without a link


def test_html_shows_the_fallback_flag_and_not_eligible(client):
    web = _Tags(_html(client, "C999", placement="web_for_you"))
    block = web.named("div")[0]
    assert block["data-fallback"] == "true" and block["data-eligible"] == "true"
    assert [a["data-item-id"] for a in web.named("div")[1:]] == ["I8"]
    none = _Tags(_html(client, "C2")).named("div")
    assert len(none) == 1 and none[0]["data-eligible"] == "false"
    assert none[0]["data-reason"] == "no_email_consent"


def test_html_by_email_is_the_same_block(client):
    r = client.get(
        "/v1/recipients/recommendations",
        params={"email": "ann@example.com", "n": 4, "format": "html"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text == _html(client, "C1")


def test_default_is_the_same_json_and_a_bad_format_is_422(client):
    plain = client.get("/v1/customers/C1/recommendations", params={"n": 4})
    explicit = client.get("/v1/customers/C1/recommendations", params={"n": 4, "format": "json"})
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == explicit.json()
    assert plain.json()["items"][0]["title"] == EVIL_TITLE  # JSON is data, not escaped
    assert plain.json()["items"][1]["url"] == "javascript:alert(1)"
    for path, params in (
        ("/v1/customers/C1/recommendations", {}),
        ("/v1/recipients/recommendations", {"email": "ann@example.com"}),
    ):
        r = client.get(path, params={**params, "format": "xml"})
        assert r.status_code == 422
        assert "format" in r.text


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://shop.example/a?b=1", True),
        ("HTTP://shop.example/a", True),
        ("  https://shop.example/a  ", True),
        ("javascript:alert(1)", False),
        ("jav&#x09;ascript:alert(1)", False),
        ("vbscript:x", False),
        ("data:text/html,<b>", False),
        ("//shop.example/a", False),
        ("/a", False),
        ("https://", False),
        ("https://shop.example/a b", False),
        ("https://shop.example/\x00", False),
        ("http://[::1", False),
        (None, False),
    ],
)
def test_http_url(url, ok):
    assert (http_url(url) is not None) is ok
    if ok:
        assert http_url(url) == url.strip()


def _rec(placement: str, block: str | None) -> RecipientRecommendations:
    return RecipientRecommendations(
        customer_id="C1", placement=placement, eligible=True, content_block=block
    )


def test_custom_template_folder_by_setting(tmp_path, monkeypatch):
    folder = tmp_path / "templates"
    (folder / "newsletter").mkdir(parents=True)
    (folder / "content_block.html").write_text("default {{ placement }}")
    (folder / "newsletter.html").write_text("nl {{ content_block }}")
    (folder / "newsletter" / "baking.html").write_text("bake {{ fallback }}")
    monkeypatch.setenv("KLANTBEELD_CONTENT_TEMPLATES_DIR", str(folder))
    renderer = ContentRenderer.from_settings(Settings())
    assert renderer.render(_rec("newsletter", "baking")) == "bake False"
    assert renderer.render(_rec("newsletter", "toys")) == "nl toys"
    assert renderer.render(_rec("web_for_you", None)) == "default web_for_you"
    with _client(tmp_path, Settings(home=tmp_path / "home")) as cl:
        assert cl.get("/v1/customers/C1/recommendations", params={"format": "html"}).text == (
            "nl general"  # C1 has no affinity to a mapped category: the default block
        )


def test_missing_or_broken_template_is_a_clear_error_at_start(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"KLANTBEELD_CONTENT_TEMPLATES_DIR=.*content_block"):
        create_app(Settings(home=tmp_path / "home", content_templates_dir=empty))
    with pytest.raises(ConfigError, match="no such template folder"):
        ContentRenderer(tmp_path / "nowhere")
    (empty / "content_block.html").write_text("{% for x in items %}")
    with pytest.raises(ConfigError, match=r"content_block.html line 1"):
        ContentRenderer(empty)
    (empty / "content_block.html").write_text("{{ no_such_variable }}")
    with pytest.raises(ConfigError, match="no_such_variable"):
        ContentRenderer(empty)
    assert (PACKAGED_TEMPLATES / "content_block.html").is_file()
