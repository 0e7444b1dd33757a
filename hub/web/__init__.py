"""The operator dashboard: one server-rendered page at ``/`` and its static files; the API docs
(``hub.web.docs``).

No build step: ``templates/index.html`` is filled with ``string.Template`` (values escaped),
``static/app.js`` is plain JavaScript that calls the API with the operator key the user
typed (kept in sessionStorage), and opens the live event feed with a short-lived stream token.
"""

from __future__ import annotations

import html
from pathlib import Path
from string import Template

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hub.web import docs

HERE = Path(__file__).resolve().parent
TEMPLATE = Template((HERE / "templates" / "index.html").read_text(encoding="utf-8"))


def render_index(currency: str, version: str) -> str:
    return TEMPLATE.substitute(currency=html.escape(currency), version=html.escape(version))


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    docs.install(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        ctx = request.app.state.hub
        body = render_index(ctx.settings.currency, request.app.version)
        headers = {
            "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'",
            "Cache-Control": "no-store",
        }
        return HTMLResponse(body, headers=headers)
