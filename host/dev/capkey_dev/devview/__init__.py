"""A web view of one capkey device: its screen (PNG, refreshed) and a clickable 4x4 keypad.

``create_app(url)`` returns an ASGI application (Starlette) that serves, relative to where it is
mounted:

    GET  /             the page (static/index.html)
    GET  /screen.png   the screen as a PNG (4x scale)
    GET  /screen.json  {"lines": [...], "version": "<hash of the framebuffer>"}
    POST /press        {"keys": "12#"} -> PRESS over the link (simulator only)

``capkey demo`` runs it next to a simulator; the demo portal mounts it as a sub-application.
The device is reached with the link's SCREEN and PRESS commands over one connection, opened on
first use and re-opened after a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from capkey.link.device import Device
from capkey.link.errors import LinkError
from capkey.link.screen import to_png
from capkey.link.transport import Transport

STATIC = Path(__file__).with_name("static")
KEYS = frozenset("0123456789ABCD*#")
_MAX_KEYS = 32
_SCALE = 3


def _connect(url: str) -> Device:
    transport = Transport.open(url)
    try:
        return Device(transport)
    except BaseException:
        transport.close()
        raise


class DeviceSession:
    """One link connection to the device, shared by the web requests (one call at a time)."""

    def __init__(self, url: str):
        self.url = url
        self._device: Device | None = None
        self._lock = threading.Lock()

    def _call(self, fn):
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._device is None:
                        self._device = _connect(self.url)
                    return fn(self._device)
                except LinkError:
                    self._drop()
                    if attempt == 2:
                        raise

    def _drop(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.close()
            except LinkError:
                pass

    def screen(self) -> tuple[bytes, list[str]]:
        return self._call(lambda d: d.screen())

    def press(self, keys: str) -> None:
        self._call(lambda d: d.press(keys))

    def close(self) -> None:
        with self._lock:
            self._drop()


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette):
    try:
        yield
    finally:
        app.state.session.close()


def create_app(url: str) -> Starlette:
    """The device view of the device at `url` (mounted elsewhere, close app.state.session)."""
    session = DeviceSession(url)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def screen_png(request: Request) -> Response:
        try:
            fb, _ = await run_in_threadpool(session.screen)
        except LinkError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return Response(to_png(fb, scale=_SCALE), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    async def screen_json(request: Request) -> Response:
        try:
            fb, lines = await run_in_threadpool(session.screen)
        except LinkError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        version = hashlib.sha256(fb).hexdigest()[:16]
        return JSONResponse({"lines": lines, "version": version},
                            headers={"Cache-Control": "no-store"})

    async def press(request: Request) -> Response:
        try:
            body = await request.json()
            keys = body["keys"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected {"keys": "..."}'}, status_code=400)
        if (not isinstance(keys, str) or not keys or len(keys) > _MAX_KEYS
                or not set(keys) <= KEYS):
            return JSONResponse({"error": "keys are 0-9 A-D * #"}, status_code=400)
        try:
            await run_in_threadpool(session.press, keys)
        except LinkError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse({"pressed": keys})

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/screen.png", screen_png),
            Route("/screen.json", screen_json),
            Route("/press", press, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=_lifespan,
    )
    app.state.session = session
    return app
