"""The error hierarchy and its round trip through task results."""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter

import api
import shared
import worker
from shared import errors

CODE_BASE = (api, shared, worker)


def _every_service_error() -> list[type[errors.ServiceError]]:
    """``ServiceError`` and every subclass the code base defines, wherever it lives.

    Every module is imported first: a class only exists once its module has run. Classes
    made by tests (an impostor left for the garbage collector) are not the code base's.
    """
    for package in CODE_BASE:
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    packages = {package.__name__ for package in CODE_BASE}
    found: list[type[errors.ServiceError]] = [errors.ServiceError]
    for cls in found:  # grows while walked: breadth first down the hierarchy
        found.extend(sub for sub in cls.__subclasses__() if sub not in found)
    return [cls for cls in found if cls.__module__.split(".")[0] in packages]


def test_every_error_has_a_unique_code_and_a_client_status() -> None:
    classes = _every_service_error()
    # Not just the ones in shared/errors.py: the API's own, the model's, the dataset's.
    assert {"JobTimeout", "MalformedRequest", "ModelIntegrityError", "DatasetError"} <= {
        cls.__name__ for cls in classes
    }
    # A class that names no code of its own is a variant of its parent (JobTimeout adds
    # the job's id to a 504), and travels under its parent's code.
    coded = [cls for cls in classes if "code" in vars(cls)]
    taken = Counter(cls.code for cls in coded)
    assert [code for code, count in taken.items() if count > 1] == []
    for cls in classes:
        assert 400 <= cls.status_code < 600, cls
        rebuilt = errors.error_from_code(cls.code, "Reported by the worker.")
        if cls in coded:
            # What a worker reports comes back as the very class, so with its status.
            assert type(rebuilt) is cls, (cls, type(rebuilt))
        else:
            assert issubclass(cls, type(rebuilt)) and type(rebuilt) in coded, cls
        assert rebuilt.status_code == cls.status_code
        assert rebuilt.code == cls.code


def test_error_from_code_rebuilds_the_class() -> None:
    rebuilt = errors.error_from_code("no_digit_found", "whatever")
    assert isinstance(rebuilt, errors.NoDigitFound)
    assert rebuilt.status_code == 422
    assert rebuilt.detail == "No digit found in the image."  # fixed for clients
    unknown = errors.error_from_code("made_up", "x")
    assert type(unknown) is errors.PredictionFailed
    assert unknown.detail == "x"
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
