"""``format=html``: a recipient's recommendations as the placement's HTML content block.

ESPs that paste HTML into a mail ask ``GET /v1/customers/{id}/recommendations?format=html``
(or the e-mail route) and get ``text/html`` rendered from a Jinja2 template with
autoescape on. Titles and every other text are escaped; item URLs (``href``) and image
URLs (``src``) are passed to the template only when they are absolute ``http``/``https``
URLs (:func:`http_url`), anything else (``javascript:``, ``data:``, relative paths,
control characters) is dropped *before* rendering, so a custom template cannot emit them
either.

Templates come from the packaged ``serving/templates`` folder, or from
``KLANTBEELD_CONTENT_TEMPLATES_DIR`` (that folder alone, no mixing). For a recipient of
placement ``P`` with content block ``B`` the first that exists is used:
``P/B.html``, ``P.html``, ``content_block.html`` (:data:`DEFAULT_TEMPLATE`, required).
Every template is compiled and test-rendered when :class:`ContentRenderer` is built
(``create_app``), so a missing default, a syntax error or an unknown variable stops the
service at start with a :class:`~klantbeeld.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jinja2
from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse

from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.api.responses import json_response
from serving.api.schemas import RecipientRecommendations

#: The template every folder must hold.
DEFAULT_TEMPLATE = "content_block.html"
#: Packaged templates (``serving/templates``).
PACKAGED_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SETTING = "KLANTBEELD_CONTENT_TEMPLATES_DIR"
_ALLOWED_SCHEMES = frozenset({"http", "https"})
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")
_SAMPLE = RecipientRecommendations.model_validate(
    {
        "customer_id": "sample",
        "placement": "sample",
        "eligible": True,
        "content_block": "general",
        "fallback": True,
        "items": [
            {
                "rank": 1,
                "item_id": "I1",
                "score": 1.0,
                "reason": "for_you",
                "title": "Sample",
                "url": "https://example.com/i1",
                "image_url": "https://example.com/i1.jpg",
                "price": 1.0,
                "category": "sample",
            }
        ],
    }
)


def http_url(value: str | None) -> str | None:
    """``value`` when it is an absolute http(s) URL with a host, else None.

    Parameters
    ----------
    value : str or None
        An item's ``url`` or ``image_url`` from the catalogue.

    Returns
    -------
    str or None
        The URL with surrounding whitespace removed; None for any other scheme
        (``javascript:``, ``data:``, ``vbscript:``), scheme-relative or relative URLs, and
        URLs holding control characters or inner whitespace (which browsers strip, so
        ``java\\tscript:`` would run).
    """
    if value is None:
        return None
    url = value.strip()
    if not url or _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in _ALLOWED_SCHEMES or not parts.hostname:
        return None
    return url


class ContentRenderer:
    """Render :class:`RecipientRecommendations` as HTML through Jinja2 templates.

    Parameters
    ----------
    folder : Path, optional
        Template folder; default :data:`PACKAGED_TEMPLATES`.

    Raises
    ------
    ConfigError
        ``folder`` is not a folder, holds no :data:`DEFAULT_TEMPLATE`, or a template
        cannot be compiled or rendered (the message names the file and line).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else PACKAGED_TEMPLATES
        where = f"{SETTING}={self.folder}" if folder is not None else str(self.folder)
        if not self.folder.is_dir():
            raise ConfigError(f"{where}: no such template folder")
        if not (self.folder / DEFAULT_TEMPLATE).is_file():
            raise ConfigError(
                f"{where}: template {DEFAULT_TEMPLATE} is missing (format=html renders it; "
                f"copy {PACKAGED_TEMPLATES / DEFAULT_TEMPLATE} there to start from)"
            )
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.folder),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates: dict[str, jinja2.Template] = {}
        for name in self.env.list_templates(extensions=["html"]):
            try:
                self._templates[name] = template = self.env.get_template(name)
                template.render(**_context(_SAMPLE))
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(
                    f"{where}: template {name} line {exc.lineno}: {exc.message}"
                ) from None
            except jinja2.TemplateError as exc:
                raise ConfigError(f"{where}: template {name} does not render: {exc}") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> ContentRenderer:
        """The renderer of ``settings.content_templates_dir`` (default: packaged)."""
        return cls(settings.content_templates_dir)

    def template_for(self, placement: str, content_block: str | None) -> jinja2.Template:
        """``<placement>/<content_block>.html``, ``<placement>.html`` or the default."""
        names = [f"{placement}.html", DEFAULT_TEMPLATE]
        if content_block:
            names.insert(0, f"{placement}/{content_block}.html")
        for name in names:
            if name in self._templates:
                return self._templates[name]
        return self._templates[DEFAULT_TEMPLATE]

    def render(self, rec: RecipientRecommendations) -> str:
        """HTML of one recipient's content block.

        Parameters
        ----------
        rec : RecipientRecommendations
            As the JSON answer of the same route (``fallback`` set).

        Returns
        -------
        str
            The rendered template; text escaped, URLs other than http(s) dropped.
        """
        return self.template_for(rec.placement, rec.content_block).render(**_context(rec))


def _context(rec: RecipientRecommendations) -> dict[str, Any]:
    items = []
    for item in rec.items:
        d = item.model_dump()
        d["url"] = http_url(item.url)
        d["image_url"] = http_url(item.image_url)
        items.append(d)
    return {
        "placement": rec.placement,
        "content_block": rec.content_block,
        "eligible": rec.eligible,
        "reason": rec.reason,
        "fallback": rec.fallback,
        "items": items,
    }


async def get_content_renderer(request: Request) -> ContentRenderer:
    """The app's renderer (``app.state.content``, built by ``create_app``)."""
    return request.app.state.content


ContentDep = Annotated[ContentRenderer, Depends(get_content_renderer)]
#: The ``format`` query parameter of the single-recipient recommendation routes.
FormatQuery = Annotated[
    Literal["json", "html"],
    Query(
        alias="format",
        description="`json` (default) or `html`: the placement's content block rendered "
        "from its template (`text/html`), for ESPs that paste HTML.",
    ),
]
#: OpenAPI of the ``text/html`` answer, merged with the JSON one of ``response_model``.
HTML_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/html": {
                "schema": {"type": "string"},
                "example": '<div class="klantbeeld-block" data-placement="newsletter" '
                'data-content-block="baking" data-eligible="true" data-fallback="false">'
                "...</div>",
            }
        }
    }
}


def recommendations_response(
    body: RecipientRecommendations, fmt: str, content: ContentRenderer
) -> Any:
    """The route's answer: ``body`` as JSON, or as HTML when ``fmt == "html"``."""
    if fmt == "html":
        return HTMLResponse(content.render(body))
    return json_response(body)

__all__ = [
    "ContentDep",
    "ContentRenderer",
    "DEFAULT_TEMPLATE",
    "FormatQuery",
    "HTML_RESPONSES",
    "PACKAGED_TEMPLATES",
    "get_content_renderer",
    "http_url",
    "recommendations_response",
]
