"""Redacting device URIs for messages: secrets hidden, everything else shown as given."""

from __future__ import annotations

import pytest

from edgebench.redaction import redact


@pytest.mark.parametrize("uri, shown", [
    ("ssh://pi:hunter2@host", "ssh://pi:***@host"),
    ("ssh://pi@host?token=t0k&python=/usr/bin/python3",
     "ssh://pi@host?token=***&python=/usr/bin/python3"),
    ("ssh://pi@host?passphrase=x&password=y&api_key=z&Auth=w",
     "ssh://pi@host?passphrase=***&password=***&api_key=***&Auth=***"),
    ("adb://127.0.0.1:5555?pass%77ord=x", "adb://127.0.0.1:5555?pass%77ord=***"),
    ("ssh://pi@host?key=/home/pi/.ssh/id_ed25519&hostkey=SHA256:abc",
     "ssh://pi@host?key=/home/pi/.ssh/id_ed25519&hostkey=SHA256:abc"),
])
def test_secrets_are_masked(uri: str, shown: str) -> None:
    assert redact(uri) == shown


@pytest.mark.parametrize("uri", [
    "labgrid://?board=x&count=0",
    "labgrid://rpi5-1?coordinator=lab:20408&reservation_timeout=30",
    "local", "ssh://pi@host:2222", "adb://SERIAL",
])
def test_tags_counts_and_plain_uris_are_shown_as_given(uri: str) -> None:
    assert redact(uri) == uri
