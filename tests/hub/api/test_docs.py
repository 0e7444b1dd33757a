"""/docs and /redoc name only the hub's own assets (hub/web/static/docs), never a CDN; the
browser test is tests/hub/web/test_docs_offline.py."""

from __future__ import annotations

import httpx


def test_the_docs_pages_name_only_the_hubs_own_assets(client: httpx.Client) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200
        assert "/static/docs/" in page.text
        assert "https://" not in page.text and "http://" not in page.text, path
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/static/docs/{asset}").status_code == 200, asset
    assert client.get("/docs/oauth2-redirect").status_code == 200
