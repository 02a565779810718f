"""`manage.py bootstrap_demo` (run by `make run`): a first answer from the demo model, offline."""

import io
import re

import openai
import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db(transaction=True)


def _bootstrap() -> str:
    out = io.StringIO()
    call_command("bootstrap_demo", stdout=out)
    return re.search(r"API key: (sk-sym-\S+)", out.getvalue()).group(1)


def test_printed_key_gets_an_answer_from_demo_model(live_gateway, settings):
    settings.DEMO_PROVIDER_ENABLED = True
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=_bootstrap(), max_retries=0)

    answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello!"}])
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hello!"}], stream=True
        )
        if c.choices
    )

    assert answer.choices[0].message.content.endswith("You said: Hello!")
    assert streamed.strip() == answer.choices[0].message.content
    assert len(client.embeddings.create(model="demo", input="x").data[0].embedding) == 16


def test_second_run_keeps_data_and_issues_a_new_key(live_gateway, settings):
    settings.DEMO_PROVIDER_ENABLED = True
    first, second = _bootstrap(), _bootstrap()

    assert first != second
    for key in (first, second):
        client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["demo"]


def test_demo_model_is_refused_when_demo_provider_is_disabled(live_gateway, settings):
    settings.DEMO_PROVIDER_ENABLED = False
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=_bootstrap(), max_retries=0)

    with pytest.raises(openai.PermissionDeniedError, match="DEMO_PROVIDER_ENABLED"):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello!"}])
