"""capkey_dev.devview: the web view of a device, against a running simulator."""

from __future__ import annotations

import time

import pytest
from capkey_dev.devview import create_app
from capkey_dev.sim import Simulator, free_port
from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Simulator(tmp_path_factory.mktemp("devview"), register=False)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def client(sim):
    with TestClient(create_app(sim.url)) as c:
        yield c


def _text(client) -> str:
    r = client.get("/screen.json")
    assert r.status_code == 200
    return " ".join(r.json()["lines"])


def _wait_for(client, text: str) -> dict:
    deadline = time.monotonic() + 5
    while True:
        r = client.get("/screen.json").json()
        if text in " ".join(r["lines"]):
            return r
        assert time.monotonic() < deadline, r
        time.sleep(0.05)


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for key in "0123456789ABCD*#":
        assert f'data-key="{key}"' in page.text
    assert client.get("/static/devview.js").status_code == 200
    assert client.get("/static/devview.css").status_code == 200


def test_screen_png_and_press(client):
    png = client.get("/screen.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    home = _wait_for(client, "Choisir la")
    r = client.post("/press", json={"keys": "#"})
    assert r.status_code == 200 and r.json() == {"pressed": "#"}
    menu = _wait_for(client, "Menu")
    assert menu["version"] != home["version"]  # the page reloads the PNG only on change
    client.post("/press", json={"keys": "*"})
    _wait_for(client, "Choisir la")


@pytest.mark.parametrize("body", [{"keys": "E"}, {"keys": ""}, {"keys": 5}, {"nokeys": 1},
                                  {"keys": "1" * 33}])
def test_bad_presses_are_refused(client, body):
    assert client.post("/press", json=body).status_code == 400
    assert client.post("/press", content=b"not json").status_code == 400


def test_unreachable_device_is_a_502(tmp_path):
    with TestClient(create_app(f"socket://127.0.0.1:{free_port()}")) as c:
        r = c.get("/screen.json")
        assert r.status_code == 502 and r.json()["error"]


def test_view_reconnects_after_the_device_restarts(client, sim):
    assert "Choisir" in _text(client) or "Menu" in _text(client)
    sim.kill()
    sim.start()
    _wait_for(client, "Choisir la")
