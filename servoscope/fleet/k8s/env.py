"""A replica's settings as ``SERVOSCOPE_*`` environment variables (the settings' own env source).

Only what differs from the defaults is written, plus what a pod must not leave to the defaults:

- ``host`` is 0.0.0.0 — in the pod only: the kubelet's probes and the Service reach the
  container on the pod's IP, and the pod's network namespace is the boundary. servoscope's own
  default, everywhere else, stays 127.0.0.1.
- ``port`` always, as the container port is generated from it.
- ``prepare_default_model`` false: the image carries the prepared model; a pod never converts one.
- thread sizing pinned to the plan's CPU cores: in a container ``sched_getaffinity`` sees every
  core of the node (unless the static CPU manager pins the pod), so "sized to the machine" would
  start a session and a decoder per node core on a pod limited to a few.
"""

from __future__ import annotations

import json
from typing import Any

from servoscope.fleet.plan import sized_to_cores
from servoscope.settings import Settings

PREFIX = "SERVOSCOPE_"
NESTED = "__"  # Settings' env_nested_delimiter
POD_HOST = "0.0.0.0"


class DeployError(ValueError):
    """Settings that must not be deployed as they are."""


def pod_settings(settings: Settings, cpu_cores: float) -> Settings:
    """``settings`` as a pod runs them: host, model preparation and thread sizing fixed (see above)."""
    if settings.faults != Settings.model_fields["faults"].default:
        raise DeployError(f"injected faults are for drills, not a fleet: remove them ({settings.faults.model_dump()})")
    if settings.port == 0:
        raise DeployError("port 0 (any free port) cannot be a container port: set a port")
    return sized_to_cores(settings, cpu_cores).model_copy(update={"host": POD_HOST, "prepare_default_model": False})


def env_vars(settings: Settings) -> list[dict[str, str]]:
    """The container's ``env``: every setting that differs from its default, and the port."""
    defaults = Settings.model_construct().model_dump(mode="json")
    current = settings.model_dump(mode="json")
    found: dict[str, str] = {f"{PREFIX}PORT": str(settings.port)}
    for key, value in current.items():
        default = defaults[key]
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                if sub_value != default[sub]:
                    found[f"{PREFIX}{key.upper()}{NESTED}{sub.upper()}"] = _text(sub_value)
        elif value != default:
            found[f"{PREFIX}{key.upper()}"] = _text(value)
    return [{"name": name, "value": found[name]} for name in sorted(found)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
