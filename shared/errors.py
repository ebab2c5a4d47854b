"""The service's error hierarchy.

Every error a client can cause (or that the service reports about itself) is a
``ServiceError`` subclass carrying its HTTP status and a stable ``code``. The API maps
them to responses in one place (``api.errors``); the worker sends the ``code`` and
message back inside task results, and ``error_from_code`` rebuilds the same class on
the API side, so both sides agree without sharing anything but this module.

Each class that declares a ``code`` registers itself under it as it is created, and a
code taken twice fails at import. They are all defined here, because the API must be
able to rebuild every error a worker reports without importing the worker's modules.
"""

from __future__ import annotations

from typing import Any, ClassVar

ERRORS_BY_CODE: dict[str, type[ServiceError]] = {}


def _register(cls: type[ServiceError]) -> None:
    taken = ERRORS_BY_CODE.get(cls.code)
    # The same class defined again (a module reloaded) replaces itself; another one may not.
    if taken is not None and (taken.__module__, taken.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise TypeError(
            f"error code {cls.code!r} of {cls.__module__}.{cls.__qualname__} is already "
            f"{taken.__module__}.{taken.__qualname__}'s"
        )
    ERRORS_BY_CODE[cls.code] = cls


class ServiceError(Exception):
    """Base class: an error with a client-safe message and an HTTP status."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_detail: ClassVar[str] = "Internal error."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:  # a subclass without a code of its own shares its parent's
            _register(cls)

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


ERRORS_BY_CODE[ServiceError.code] = ServiceError


# --- the client's fault (4xx) ---------------------------------------------------------


class InvalidInput(ServiceError):
    status_code = 400
    code = "invalid_input"
    default_detail = "Invalid input."


class EmptyUpload(InvalidInput):
    code = "empty_upload"
    default_detail = "The uploaded file is empty."


class NotAnImage(InvalidInput):
    code = "not_an_image"
    default_detail = "File provided is not an image."


class CorruptImage(InvalidInput):
    """PNG or JPEG by its signature, but unreadable (truncated, bad checksum, ...)."""

    code = "corrupt_image"
    default_detail = "The image is corrupt or truncated."


class MalformedRequest(InvalidInput):
    status_code = 422
    code = "malformed_request"
    default_detail = "Send the image as multipart/form-data in a field named 'file'."


class UnknownQueryOption(ServiceError):
    status_code = 422
    code = "unknown_query_option"
    default_detail = "Unknown query option."


class UnsupportedImageFormat(ServiceError):
    status_code = 415
    code = "unsupported_image_format"
    default_detail = "Image format not supported; send PNG or JPEG."


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"
    default_detail = "The upload is too large."


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"
    default_detail = "The image has too many pixels."


class NoDigitFound(ServiceError):
    """The client always sees the same detail; ``reason`` says why, for logs and tests."""

    status_code = 422
    code = "no_digit_found"
    default_detail = "No digit found in the image."

    def __init__(self, reason: str | None = None) -> None:
        super().__init__()
        self.reason = reason or self.default_detail


class TooManyFiles(ServiceError):
    status_code = 413
    code = "too_many_files"
    default_detail = "Too many files in one batch."


class JobNotFound(ServiceError):
    status_code = 404
    code = "job_not_found"
    default_detail = "Job not found (never issued, or expired)."


# --- the service's state (5xx) ---------------------------------------------------------


class ServiceUnavailable(ServiceError):
    status_code = 503
    code = "service_unavailable"
    default_detail = "The service is temporarily unavailable."


class BrokerUnavailable(ServiceUnavailable):
    code = "broker_unavailable"
    default_detail = "The job queue (Redis) is unreachable; try again shortly."


class QueueFull(ServiceUnavailable):
    code = "queue_full"
    default_detail = "Too many jobs are waiting; try again shortly."


class QueueOutOfMemory(ServiceUnavailable):
    """Redis is (nearly) at its ``maxmemory``: new jobs wait until the queue drains."""

    code = "queue_out_of_memory"
    default_detail = "The job queue is out of memory; try again shortly."


class ReplicasUnavailable(ServiceUnavailable):
    """Fewer than ``REDIS_MIN_REPLICAS`` replicas are connected: the job was not written."""

    code = "replicas_unavailable"
    default_detail = (
        "Too few replicas of the job queue are connected to keep the job safe; try again shortly."
    )


class ReplicationTimeout(ServiceUnavailable):
    """The job was written, but not confirmed by ``REDIS_MIN_REPLICAS`` replicas in time.

    It may still run (at least once): the client, told 503, may send it again.
    """

    code = "replication_timeout"
    default_detail = (
        "The job queue could not confirm the job on its replicas in time; try again shortly "
        "(the job may still run)."
    )


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"
    default_detail = "The model is not available."


class ModelIntegrityError(ModelUnavailable):
    code = "model_integrity_error"
    default_detail = "The model file does not match its metadata."


class UnknownModelVersion(ModelUnavailable):
    code = "unknown_model_version"
    default_detail = "No model of that version is stored."


class DatasetError(ServiceError):
    code = "dataset_error"
    default_detail = "The MNIST data could not be loaded."


class PredictionTimeout(ServiceError):
    status_code = 504
    code = "prediction_timeout"
    default_detail = "The prediction did not finish in time; poll the job for its result."


class PredictionFailed(ServiceError):
    status_code = 500
    code = "prediction_failed"
    default_detail = "The prediction failed."


def error_from_code(code: str, detail: str | None = None) -> ServiceError:
    """Rebuild an error the worker reported; unknown codes become a generic failure."""
    cls = ERRORS_BY_CODE.get(code, PredictionFailed)
    return cls(detail)
