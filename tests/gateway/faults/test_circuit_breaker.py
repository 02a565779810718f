"""Circuit breakers: a deployment that keeps failing is taken out, then probed once it has cooled down.

Here a circuit opens after CIRCUIT_FAILURE_THRESHOLD = 2 consecutive failures.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import logged
from tests.gateway.faults.conftest import PROMPT, Deployed

pytestmark = pytest.mark.django_db(transaction=True)

COOLDOWN = 0.5


@pytest.fixture(autouse=True)
def _quick_circuits(settings):  # type: ignore[no-untyped-def]
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    settings.CIRCUIT_COOLDOWN = COOLDOWN


def _cool_down() -> None:
    time.sleep(COOLDOWN + 0.1)


def test_traffic_skips_a_deployment_whose_circuit_is_open(faults, settings):
    settings.CIRCUIT_COOLDOWN = 60
    faults.script("primary", "500")
    deployments = faults.serve("m", Deployed("primary"), Deployed("secondary", priority=1))

    for _ in range(4):
        faults.ask("m")

    assert faults.attempts() == ["primary", "secondary", "primary", "secondary", "secondary", "secondary"]
    rows = logged(4)
    assert {r.deployment_id for r in rows} == {deployments["secondary"].id}
    assert [len(r.attempts) for r in rows] == [1, 1, 0, 0], "once open, the primary is not even tried"


def test_request_fails_fast_with_503_when_the_only_circuit_is_open(faults):
    faults.script("a", "500")
    faults.serve("m", Deployed("a"))

    with pytest.raises(openai.InternalServerError) as first:
        faults.ask("m")
    with pytest.raises(openai.APIStatusError) as second:
        faults.ask("m")

    assert first.value.status_code == 502
    assert faults.calls("a") == 2, "the circuit opened after two attempts, cutting the third short"
    assert (second.value.status_code, second.value.code) == (503, "service_unavailable")
    assert faults.calls("a") == 2, "an open circuit is not called"


def test_half_open_probe_closes_the_circuit_when_the_deployment_recovers(faults):
    faults.script("a", "500", "500", "ok")
    deployment = faults.serve("m", Deployed("a"))["a"]
    with pytest.raises(openai.InternalServerError):
        faults.ask("m")
    _cool_down()

    faults.ask("m")  # the probe
    faults.ask("m")

    assert faults.calls("a") == 4
    rows = logged(3)
    assert [(r.status_code, r.deployment_id) for r in rows[1:]] == [(200, deployment.id)] * 2


def test_half_open_probe_reopens_the_circuit_when_the_deployment_still_fails(faults):
    faults.script("a", "500", "500", "503", "ok")
    faults.serve("m", Deployed("a"))
    with pytest.raises(openai.InternalServerError):
        faults.ask("m")
    _cool_down()

    with pytest.raises(openai.InternalServerError):
        faults.ask("m")  # the probe fails: one attempt only
    with pytest.raises(openai.APIStatusError) as caught:
        faults.ask("m")

    assert caught.value.status_code == 503
    assert faults.calls("a") == 3


def test_stream_failures_before_the_first_chunk_open_the_circuit(faults, settings):
    settings.CIRCUIT_COOLDOWN = 60
    faults.script("primary", "reset")
    faults.serve("m", Deployed("primary"), Deployed("secondary", priority=1))

    streams = [faults.stream("m") for _ in range(3)]

    assert all(s.done for s in streams)
    assert faults.attempts() == ["primary", "secondary", "primary", "secondary", "secondary"]


def test_flapping_primary_serves_again_after_its_cooldown_when_it_recovers(faults):
    faults.script("primary", "500", "500", "ok")
    deployments = faults.serve("m", Deployed("primary"), Deployed("secondary", priority=1))
    for _ in range(3):
        faults.ask("m")
    assert faults.attempts() == ["primary", "secondary", "primary", "secondary", "secondary"]
    _cool_down()

    faults.ask("m")  # due a probe: the primary answers it
    faults.ask("m")

    assert faults.attempts()[5:] == ["primary", "primary"]
    rows = logged(5)
    assert [r.deployment_id for r in rows[3:]] == [deployments["primary"].id] * 2


def test_other_open_deployment_is_probed_when_one_probe_fails(faults, settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    faults.script("pair", "500", "500", "500", "ok")  # shared: whichever is called first fails first
    faults.serve("m", Deployed("a", script="pair"), Deployed("b", script="pair"))
    with pytest.raises(openai.InternalServerError):
        faults.ask("m")  # both fail once: both circuits open
    _cool_down()

    reply = faults.ask("m")  # both are due a probe: the first fails, the other answers

    assert reply.choices[0].message.content
    first, second = faults.attempts()[2:]
    assert {first, second} == {"a", "b"}


def test_circuit_is_probed_again_when_a_probe_was_abandoned(faults, settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    faults.script("a", "500", "hang", "ok")
    faults.serve("m", Deployed("a"))
    with pytest.raises(openai.InternalServerError):
        faults.ask("m")  # the circuit opens
    _cool_down()
    with pytest.raises(httpx.ReadTimeout):  # the probe hangs; its client gives up
        httpx.post(
            f"{faults.gateway}/v1/chat/completions",
            headers={"Authorization": f"Bearer {faults.setup.secret}"},
            json={"model": "m", "messages": [{"role": "user", "content": PROMPT}]},
            timeout=0.3,
        )
    _cool_down()

    reply = faults.ask("m")

    assert reply.choices[0].message.content
    assert faults.attempts() == ["a", "a", "a"]
