"""A small client of the hub's public HTTP API (contract section 5), as the demo uses it."""

import uuid
from typing import Any

import httpx

from demo.procs import DemoError


class HubApi:
    def __init__(self, base_url: str, key: str) -> None:
        self._http = httpx.Client(
            base_url=f"{base_url}/api/v1",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10.0,
        )

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response = self._http.post(path, json=body, headers=headers)
        if response.status_code not in (200, 201, 202):
            raise DemoError(f"POST {path} answered {response.status_code}: {response.text[:200]}")
        result: dict[str, Any] = response.json()
        return result

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.patch(path, json=body)
        if response.status_code != 200:
            raise DemoError(f"PATCH {path} answered {response.status_code}: {response.text[:200]}")
        result: dict[str, Any] = response.json()
        return result

    def get(self, path: str, **params: str) -> Any:
        response = self._http.get(path, params=params)
        if response.status_code != 200:
            raise DemoError(f"GET {path} answered {response.status_code}: {response.text[:200]}")
        return response.json()

    def topup(self, account: str, amount: str) -> dict[str, Any]:
        key = uuid.uuid4().hex
        body = {"amount": amount, "reference": f"demo-{key[:8]}"}
        return self.post(f"/accounts/{account}/topups", body, **{"Idempotency-Key": key})
