"""``GET /dashboard``: a live page that polls ``/v1/stats`` and charts it, and ``/static``, its files.

Everything the page loads is served by the package (uPlot is vendored under ``static/vendor``):
the dashboard works on a machine that reaches nothing but this server.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = resources.files("servoscope.server") / "static"


async def dashboard(request: Request) -> HTMLResponse:
    """The page; its script takes the stage names from ``/v1/stats`` (``stages``), as the server means them."""
    html = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


routes = [
    Route("/dashboard", dashboard, methods=["GET"]),
    Mount("/static", StaticFiles(packages=[("servoscope.server", "static")]), name="static"),
]
