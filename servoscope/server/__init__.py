"""HTTP: the JSON API, the Open Inference Protocol (KServe v2), health and config. Translation only."""
