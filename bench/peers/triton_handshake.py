"""A fix for PyTriton 0.7.0's handshake race between the instances of one model.

PyTriton ships its proxy code (``pytriton/proxy/*.py``) to Triton's Python backend, which runs
it in one stub process per model instance, and Triton initialises the instances of a model in
parallel. The first instance serves the model's configuration on a Unix socket; the others wait
for the socket *file* (polling every millisecond, for at most 1 s) and connect at once. But the
file exists from ``bind()``, before ``listen()``: a connect in between is refused, the instance
fails, and so does the model's load. On this 2-core machine 3 starts in 4 of a 2-instance model
failed so (``ConnectionRefusedError`` in ``get_config_from_handshake_server``); one instance
never connects, so one-instance layouts never meet it.

:func:`patch` makes the proxy code that PyTriton sends with the model retry a refused connect
until its deadline, and gives that deadline 30 s (the first instance may take longer than 1 s to
start on busy cores). PyTriton's installed files are left as they are.
"""

from __future__ import annotations

from pytriton.models.model import Model

FILE = "communication.py"
DEADLINE = (
    "def get_config_from_handshake_server(socket_path: pathlib.Path, timeout_s: float = 1.0) -> dict:\n",
    "def get_config_from_handshake_server(socket_path: pathlib.Path, timeout_s: float = 30.0) -> dict:\n",
)
CONNECT = (
    """\
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(0.0, should_stop_before_s - time.time()))
        sock.connect(socket_path.as_posix())
""",
    """\
        while True:  # retried (bench/peers/triton_handshake.py): the file exists before the server listens
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(max(0.0, should_stop_before_s - time.time()))
            try:
                sock.connect(socket_path.as_posix())
                break
            except ConnectionRefusedError:
                sock.close()
                if time.time() >= should_stop_before_s:
                    raise
                time.sleep(0.01)
""",
)


def patched(source: str) -> str:
    for old, new in (DEADLINE, CONNECT):
        if source.count(old) != 1:
            raise RuntimeError(f"PyTriton's proxy {FILE} is not the one this fix was written for: no {old.strip()!r}")
        source = source.replace(old, new)
    return source


def patch() -> None:
    """From now on, models bound to Triton carry the fixed ``communication.py``."""
    files = Model.get_proxy_model_files

    def with_fix(model: Model) -> dict[str, bytes]:
        out = files(model)
        key = f"file:{model.model_version}/{FILE}"
        out[key] = patched(out[key].decode()).encode()
        return out

    Model.get_proxy_model_files = with_fix  # type: ignore[method-assign]
