"""Triton's gRPC protocol: ``grpc_service.proto`` and ``model_config.proto`` from
triton-inference-server/common (BSD-3-Clause, headers kept), and the Python modules ``protoc``
generated from them (``make protos`` regenerates them with grpcio-tools).

Two edits, both off the wire: the protobuf package is ``servoscope.triton`` instead of
``inference``, and the import names this folder, so these messages never collide with
tritonclient's copies when both are loaded in one process. The wire names of the service,
``/inference.GRPCInferenceService/<Method>``, are the ones tritonclient calls: the server registers
its handlers under that name (``server/grpc_server.py``), and protobuf messages travel by field
number, not by package.

The generated modules are committed, not built at install: the package stays pure Python, and
grpcio-tools (a compiler) is needed only to regenerate them.
"""
