"""The error hierarchy and its round trip through task results."""

from __future__ import annotations

from shared import errors


def test_every_error_has_a_unique_code_and_a_client_status() -> None:
    codes = [cls.code for cls in errors.ERRORS_BY_CODE.values()]
    assert len(codes) == len(set(codes))
    assert all(400 <= cls.status_code < 600 for cls in errors.ERRORS_BY_CODE.values())


def test_error_from_code_rebuilds_the_class() -> None:
    rebuilt = errors.error_from_code("no_digit_found", "whatever")
    assert isinstance(rebuilt, errors.NoDigitFound)
    assert rebuilt.status_code == 422
    assert rebuilt.detail == "No digit found in the image."  # fixed for clients
    unknown = errors.error_from_code("made_up", "x")
    assert isinstance(unknown, errors.PredictionFailed)
    assert errors.NotAnImage().to_dict() == {
        "code": "not_an_image",
        "detail": "File provided is not an image.",
    }


def test_every_error_the_worker_reports_is_rebuilt_with_its_status() -> None:
    # A class missing from ERRORS_BY_CODE comes back as a 500: corrupt images once did.
    from shared.imaging import CorruptImage

    rebuilt = errors.error_from_code("corrupt_image", "The image is corrupt or truncated.")
    assert type(rebuilt) is CorruptImage
    assert rebuilt.status_code == 400
