"""The error tree and its HTTP statuses.

::

    ServoscopeError                      500  base of everything servoscope raises on purpose
    ├── RequestError                     400  the request itself is wrong
    │   ├── EmptyBody                    400  no bytes in the body
    │   ├── InvalidParameter             400  a query parameter or protocol field is wrong
    │   ├── InvalidImage                 400  the bytes are not a readable image (or truncated)
    │   ├── UnsupportedMediaType         415  content type missing or not an accepted image type
    │   ├── PayloadTooLarge              413  body above the byte limit
    │   ├── ImageTooLarge                413  image dimensions above the pixel limit
    │   ├── ImageTooComplex              413  scans, chunks, frames or metadata above their limits
    │   ├── RequestTimeout               408  the body did not arrive within the body-read timeout
    │   └── ModelNotFound                404  no such model is served
    ├── Overloaded                       429  a queue is full: retry after a moment
    ├── Unavailable                      503  not ready, or shutting down
    │   └── InstanceLost                 503  a model instance's process died running the batch (twice)
    ├── DeadlineExceeded                 504  the request's deadline passed before it was served
    └── InferenceFailed                  500  the model run failed

Each error has a ``reason``: a short fixed name used as a metrics label (refusals are counted by it).
"""

from __future__ import annotations


class ServoscopeError(Exception):
    status = 500
    reason = "error"  # a low-cardinality name for metrics labels
    retry_after_s: float | None = None

    @property
    def message(self) -> str:
        return str(self) or type(self).__name__


class RequestError(ServoscopeError):
    status = 400
    reason = "bad_request"


class EmptyBody(RequestError):
    reason = "empty_body"


class InvalidParameter(RequestError):
    reason = "invalid_parameter"


class InvalidImage(RequestError):
    reason = "invalid_image"


class UnsupportedMediaType(RequestError):
    status = 415
    reason = "unsupported_media_type"


class PayloadTooLarge(RequestError):
    status = 413
    reason = "payload_too_large"


class ImageTooLarge(RequestError):
    status = 413
    reason = "image_too_large"


class ImageTooComplex(RequestError):
    """The image's structure would cost more decoding work than its bytes and pixels show (a JPEG of
    thousands of scans, a PNG of thousands of chunks); ``what`` names the limit passed."""

    status = 413
    reason = "image_too_complex"

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


class RequestTimeout(RequestError):
    status = 408
    reason = "request_timeout"


class ModelNotFound(RequestError):
    status = 404
    reason = "model_not_found"


class Overloaded(ServoscopeError):
    status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0, reason: str = "overloaded") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class Unavailable(ServoscopeError):
    status = 503

    def __init__(self, message: str, retry_after_s: float = 1.0, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class InstanceLost(Unavailable):
    """A model instance's process died (or hung) while it held the request's batch; the runtime
    starts a replacement. The batcher retries the batch once before answering with this."""

    def __init__(self, message: str, retry_after_s: float = 1.0, reason: str = "instance_lost") -> None:
        super().__init__(message, retry_after_s, reason)


class DeadlineExceeded(ServoscopeError):
    status = 504
    reason = "deadline_exceeded"


class InferenceFailed(ServoscopeError):
    status = 500
    reason = "inference_failed"


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception: its own for servoscope errors, 500 for anything else."""
    return exc.status if isinstance(exc, ServoscopeError) else 500
