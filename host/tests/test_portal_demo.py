"""`capkey_dev.demo`: what is checked before anything starts (the whole demo runs in
hil_tests/test_e2e_browser.py against the simulator)."""

from __future__ import annotations

import socket

import pytest
from capkey_dev.demo import Demo, DemoError


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "something").write_text("x")
    with pytest.raises(DemoError, match="is not empty"):
        Demo(tmp_path, http_port=0, agent_port=0, echo=lambda line: None).start()


def test_refuses_a_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(DemoError, match=f"port {port}"):
            Demo(tmp_path / "w", http_port=port, agent_port=0, echo=lambda line: None).start()
    assert not (tmp_path / "w").exists()


def test_addresses_follow_the_ports(tmp_path):
    demo = Demo(tmp_path, http_port=18500, agent_port=18501, echo=lambda line: None)
    assert demo.origin == "http://127.0.0.1:18500"
    assert demo.device_view_url == "http://127.0.0.1:18500/appareil/"
    assert demo.agent_url == "http://127.0.0.1:18501"
