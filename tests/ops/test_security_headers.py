"""The HTTPS and Content-Security-Policy settings as a browser sees them (README, "HTTPS and
security headers")."""

from __future__ import annotations

import pytest
from django.test import Client
from pytest_django import Settings

pytestmark = pytest.mark.django_db


def test_pages_carry_an_enforced_policy_without_inline_script_by_default() -> None:
    response = Client().get("/accounts/login/")

    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy
    assert "report-uri" not in policy
    assert "Content-Security-Policy-Report-Only" not in response


def test_policy_is_reported_not_enforced_when_csp_report_only_is_on(settings: Settings) -> None:
    settings.CSP_REPORT_ONLY = True
    settings.CSP_REPORT_URI = "https://csp.example.com/report"

    response = Client().get("/accounts/login/")

    assert "Content-Security-Policy" not in response
    assert response["Content-Security-Policy-Report-Only"].endswith("; report-uri https://csp.example.com/report")


def test_https_responses_carry_hsts_when_its_variables_are_set(settings: Settings) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True

    response = Client().get("/accounts/login/", secure=True)

    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_plain_http_is_redirected_to_https_when_ssl_redirect_is_on(settings: Settings) -> None:
    settings.SECURE_SSL_REDIRECT = True

    response = Client().get("/accounts/login/?next=/")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/accounts/login/?next=/"
