"""The model repository: ``<repository>/<name>/<version>/{model.onnx, config.toml, labels.txt}``."""
