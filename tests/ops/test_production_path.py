"""The README's production path on a fresh database, with real processes: the server starts, is
alive but not ready until `manage.py migrate`, the first administrator made by
`manage.py create_admin` signs in with the printed password, and a first request is answered."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.ops.conftest import PUBLIC_HOST, manage, production_environment, start_gunicorn

POD_IP_HOST = "10.1.2.3:8000"  # what a Kubernetes probe sends


def test_production_path_serves_a_first_request_when_followed_on_a_fresh_database(
    fresh_database_url: str, tmp_path: Path
) -> None:
    environment = production_environment(
        fresh_database_url,
        tmp_path,
        LOCAL_LOGIN="true",  # the first administrator signs in with a password
        SECURE_COOKIES="false",  # this test speaks plain HTTP
        DEMO_PROVIDER_ENABLED="true",  # a first request that needs no network
    )
    with start_gunicorn(environment, tmp_path / "gunicorn.log") as server:
        # Started before migrating: alive, not ready, and saying why, even to a probe by pod IP.
        assert server.get("/healthz", host=POD_IP_HOST).json() == {"status": "ok"}
        unready = server.get("/readyz", host=POD_IP_HOST)
        assert unready.status_code == 503
        assert unready.json()["checks"]["database"] == "ok"
        assert re.fullmatch(
            r"\d+ migration\(s\) not applied, first \w+\.\w+: run `manage\.py migrate`",
            unready.json()["checks"]["migrations"],
        )
        assert server.get("/admin/login/", host=POD_IP_HOST).status_code == 400  # only probes skip the host check

        migrated = manage(environment, "migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stderr

        ready = server.get("/readyz", host=POD_IP_HOST)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["migrations"] == "ok"

        created = manage(environment, "create_admin", "--username", "ops", "--email", "ops@example.com")
        assert created.returncode == 0, created.stderr
        password = created.stdout.strip().splitlines()[-1]
        assert "signs in at /admin/" in created.stderr and password not in created.stderr

        with httpx.Client(base_url=server.url, headers={"Host": PUBLIC_HOST}, timeout=30) as browser:
            browser.get("/admin/login/")
            signed_in = browser.post(
                "/admin/login/?next=/admin/",
                data={
                    "username": "ops",
                    "password": password,
                    "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                    "next": "/admin/",
                },
            )
            assert signed_in.status_code == 302 and signed_in.headers["location"] == "/admin/", signed_in.text[:500]
            assert browser.get("/admin/").status_code == 200

        issued = manage(environment, "issue_admin_token", "ops")
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip().splitlines()[-1]
        with httpx.Client(
            base_url=server.url + "/api/v1",
            headers={"Host": PUBLIC_HOST, "Authorization": f"Bearer {token}"},
            timeout=30,
        ) as api:
            # A secret stored under SECRETS_ENCRYPTION_KEY: the key the operator gave works.
            vendor = api.post(
                "/providers", json={"name": "OpenAI", "kind": "openai", "api_key": "sk-test-not-real", "approved": True}
            )
            assert vendor.status_code == 201, vendor.text
            assert vendor.json()["has_api_key"] is True
            demo = api.post("/providers", json={"name": "Demo", "kind": "demo", "approved": True}).json()
            model = api.post(
                "/models",
                json={"name": "first", "deployments": [{"provider": demo["id"], "upstream_model": "demo-echo"}]},
            )
            assert model.status_code == 201, model.text
            unit = api.post("/business-units", json={"name": "Operations"}).json()
            project = api.post(
                "/projects", json={"name": "First", "business_unit": unit["id"], "allowed_models": ["first"]}
            ).json()
            key = api.post(f"/projects/{project['id']}/keys", json={"name": "first key"}).json()["key"]

        answer = httpx.post(
            server.url + "/v1/chat/completions",
            headers={"Host": PUBLIC_HOST, "Authorization": f"Bearer {key}"},
            json={"model": "first", "messages": [{"role": "user", "content": "Hello!"}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert "You said: Hello!" in answer.json()["choices"][0]["message"]["content"]
