"""servoscope: an image-classification inference service you can see into and fix."""

__version__ = "0.1.0"
