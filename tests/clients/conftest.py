"""The real-client matrix reuses the /v1/messages setup: a project with a key, the mock Anthropic
and the mock OpenAI upstream (tests/gateway/messages/conftest.py)."""

import sys

import pytest

from tests.gateway.messages.conftest import messages_setup  # noqa: F401 - fixtures
from tests.gateway.providers.conftest import anthropic_upstream, mock_anthropic  # noqa: F401 - fixtures


def say_version(config: pytest.Config, line: str) -> None:
    """Print which client release a run tested, in the test output even under -q (where captured
    prints are not shown); an xdist worker's line goes to its stderr."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:  # no capturing, or an xdist worker
        print(line, file=sys.__stderr__)
        return
    with capture.global_and_fixture_disabled():  # what capsys.disabled() does, for a module fixture
        reporter.write("\n")  # under -q the progress dots may be on the current line
        reporter.write_line(line)
