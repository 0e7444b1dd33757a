"""Security headers (issue 14, item 8): ``X-Content-Type-Options: nosniff`` on every response;
pages (the dashboard, Swagger UI) cannot be framed by another site."""

from __future__ import annotations

import httpx

from tests.hub.api.conftest import Keys


def test_every_response_says_nosniff(client: httpx.Client, keys: Keys) -> None:
    answers = [
        client.get("/healthz"),
        client.get("/metrics"),
        client.get("/openapi.json"),
        client.get("/static/app.js"),
        client.get("/"),
        client.get("/no/such/page"),
        client.get("/api/v1/meters"),  # 401
        client.get("/api/v1/meters", headers=keys.h("customer")),  # 403
        client.get("/api/v1/meters", headers=keys.h("operator")),
        client.post("/api/v1/providers", json={"id": "!"}, headers=keys.h("admin")),  # 422
        client.post("/api/v1/providers", content=b"x" * (2 * 1024 * 1024)),  # 413
    ]
    statuses = {r.status_code for r in answers}
    assert statuses >= {200, 401, 403, 404, 413, 422}, statuses
    for r in answers:
        assert r.headers.get("x-content-type-options") == "nosniff", (r.request.url, r.headers)


def test_pages_cannot_be_framed(client: httpx.Client) -> None:
    for path in ("/", "/docs"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["x-frame-options"] == "DENY"
        directives = [d.strip() for d in r.headers["content-security-policy"].split(";")]
        assert "frame-ancestors 'none'" in directives, directives
    # The dashboard keeps its own policy (self only) besides.
    assert "default-src 'self'" in client.get("/").headers["content-security-policy"]
