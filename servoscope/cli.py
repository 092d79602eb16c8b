"""``servoscope``: one command, with sub-commands (serve, model …)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from servoscope import __version__
from servoscope.doctor import command as doctor_command
from servoscope.doctor import snapshot as snapshot_command
from servoscope.drills import command as drill_command
from servoscope.drills import faults as drill_faults
from servoscope.fleet import command as fleet_command
from servoscope.fleet import view_command as fleet_view_command
from servoscope.loadgen import command as load_command
from servoscope.models import prepare
from servoscope.models.config import ModelConfigError
from servoscope.planner import command as plan_command
from servoscope.rollout import command as rollout_command
from servoscope.settings import SettingsError, effective, load_settings
from servoscope.variants import command as model_command

log = logging.getLogger("servoscope")


class Tool(Protocol):
    """A command module: registers its sub-command on the ``servoscope`` parser."""

    def add_parser(self, subparsers: Any) -> None: ...


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings(
        args.config,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        model_repository=args.model_repository,
        models=tuple(args.models.split(",")) if args.models else None,
        preprocess_workers=args.preprocess_workers,
        log_level=args.log_level,
        telemetry=args.telemetry,
        admission=args.admission,
        slo_p95_ms=args.slo_p95_ms,
        max_pending=args.max_pending,
        model_overrides=overrides_from_flags(args),
        faults=faults_from_flags(args),
    )
    _setup_logging(settings.log_level)
    print("servoscope effective configuration:", json.dumps(effective(settings), indent=2), file=sys.stderr)
    prepare.ensure_default(settings.model_repository, settings.models_to_prepare())
    from servoscope.server.app import create_app, load_pipeline
    from servoscope.server.run import serve

    # The composition root wires the drills' faults into the pipeline's seam (none unless asked for)
    wrap_runtime = drill_faults.runtime_wrapper(settings.faults)
    collectors = [drill_faults.FaultCollector(settings.faults)] if wrap_runtime else []
    pipeline = load_pipeline(settings, wrap_runtime=wrap_runtime)  # fail here, before binding the port
    app = create_app(settings, pipeline, collectors=collectors, delay_runtime=drill_faults.delayed)
    serve(app, settings)
    return 0


def overrides_from_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """The model overrides given as flags (merged over those from the file and environment)."""
    given = {
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_s": None if args.max_queue_delay_ms is None else args.max_queue_delay_ms / 1000.0,
        "instances": args.instances,
        "intra_op_threads": args.intra_op_threads,
        "isolation": args.isolation,
    }
    given = {k: v for k, v in given.items() if v is not None}
    return given or None


def faults_from_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """Injected faults given as flags (see servoscope.drills.faults); None when none is given."""
    if args.inject_inference_delay_ms is None:
        return None
    return {"inference_delay_s": args.inject_inference_delay_ms / 1000.0}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="servoscope", description=__doc__)
    top.add_argument("--version", action="version", version=f"servoscope {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the models of a repository over HTTP")
    serve.add_argument("--config", type=Path, help="TOML settings file (also SERVOSCOPE_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 8001; 0: no gRPC)")
    serve.add_argument("--model-repository", type=Path)
    serve.add_argument("--models", help="comma-separated model names (default: all in the repository)")
    serve.add_argument("--preprocess-workers", type=int)
    serve.add_argument("--log-level")
    serve.add_argument(
        "--admission",
        choices=["time", "adaptive", "static"],
        help="by predicted completion against --slo-p95-ms (default), an adaptive concurrency limit, "
        "or max_pending alone",
    )
    serve.add_argument("--slo-p95-ms", type=float, help="the latency objective time admission holds (default 200)")
    serve.add_argument("--max-pending", type=int, help="most requests in progress per model")
    serve.add_argument(
        "--telemetry", action=argparse.BooleanOptionalAction, default=None, help="metrics, stats and tracing"
    )
    batching = serve.add_argument_group("model overrides (applied over every model's config.toml)")
    batching.add_argument("--max-batch-size", type=int)
    batching.add_argument("--max-queue-delay-ms", type=float)
    batching.add_argument("--instances", type=int, help="model instances (ONNX Runtime sessions) per model")
    batching.add_argument(
        "--intra-op-threads", type=int, help="ONNX Runtime threads per instance (0: sized to the machine)"
    )
    batching.add_argument(
        "--isolation",
        choices=["thread", "process"],
        help="each instance's session in the serving process, or in a child process",
    )
    faults = serve.add_argument_group("injected faults (drills only; see servoscope.drills.faults)")
    faults.add_argument(
        "--inject-inference-delay-ms",
        type=float,
        help="INJECTED: extra milliseconds per inference batch (default: none)",
    )
    serve.set_defaults(func=cmd_serve)

    for tool in TOOLS:
        tool.add_parser(sub)
    return top


# Sub-commands that live beside the code they drive: each module has add_parser(subparsers),
# which registers its command and sets ``func`` (taking the parsed args, returning an exit code).
# None of them imports this module: the command line is the top layer.
TOOLS: tuple[Tool, ...] = (
    model_command,
    load_command,
    drill_command,
    doctor_command,
    snapshot_command,
    fleet_command,
    fleet_view_command,
    plan_command,
    rollout_command,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (SettingsError, ModelConfigError) as exc:
        print(f"servoscope: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
