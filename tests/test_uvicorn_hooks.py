"""servoscope/server/run.py subclasses uvicorn's private httptools protocol: every hook it overrides,
every private method it calls and every attribute it reads must still be uvicorn's, or this fails
naming the one that is gone (pyproject.toml pins uvicorn to the versions this has passed on)."""

from __future__ import annotations

import types

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from servoscope.server import run
from servoscope.server.run import BoundedHttpToolsProtocol


def gone_methods(cls: type, names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that ``cls`` does not define itself (inherited from asyncio.Protocol counts as gone)."""
    return [name for name in names if not callable(vars(cls).get(name))]


def gone_state(cls: type, names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that no method of ``cls`` (defined there) loads or stores."""
    used = {n for value in vars(cls).values() if isinstance(value, types.FunctionType) for n in value.__code__.co_names}
    return [name for name in names if name not in used]


def test_uvicorn_still_defines_every_hook_servoscope_overrides_or_calls() -> None:
    gone = gone_methods(HttpToolsProtocol, run.UVICORN_HOOKS + run.UVICORN_CALLS)
    assert not gone, f"uvicorn {uvicorn.__version__}: HttpToolsProtocol lacks {gone}, which server/run.py uses"


def test_uvicorn_still_keeps_the_state_servoscope_reads() -> None:
    gone = gone_state(HttpToolsProtocol, run.UVICORN_STATE)
    assert not gone, f"uvicorn {uvicorn.__version__}: HttpToolsProtocol no longer has {gone}, which server/run.py reads"
    gone = [n for n in run.UVICORN_CYCLE_STATE if n not in RequestResponseCycle.__init__.__code__.co_names]
    assert not gone, f"uvicorn {uvicorn.__version__}: RequestResponseCycle lacks {gone}, which the lingering close uses"


def test_every_override_is_in_the_checked_list() -> None:
    overridden = {n for n, v in vars(BoundedHttpToolsProtocol).items() if callable(v) and hasattr(HttpToolsProtocol, n)}
    assert overridden == set(run.UVICORN_HOOKS)


def test_a_hook_or_state_that_is_gone_is_named() -> None:
    kept = {k: v for k, v in vars(HttpToolsProtocol).items() if k not in ("on_url", "on_body")}
    stripped = type("Stripped", (), kept)
    assert gone_methods(stripped, run.UVICORN_HOOKS) == ["on_url", "on_body"]
    init_only = type("InitOnly", (), {"__init__": HttpToolsProtocol.__init__})
    gone = gone_state(init_only, run.UVICORN_STATE)
    assert "url" in gone and "parser" not in gone  # the url is set per request, the parser at once
