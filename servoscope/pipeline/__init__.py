"""The request path, free of HTTP: decode → preprocess → batch → infer → postprocess."""
