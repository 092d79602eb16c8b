"""Offline model variants, above the pipeline: quantize (int8), convert (fp16), the sample set they
are judged on, agreement with FP32, offline speed, the side-by-side comparison, and the
``servoscope model …`` command. The repository they read and write is :mod:`servoscope.models`."""
