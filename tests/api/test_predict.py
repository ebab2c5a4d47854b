"""``POST /predict/mnist`` with eager Celery and an in-process fake Redis."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from shared.queue import JOB_KEY_PREFIX
from shared.settings import Settings
from tests.images import encode, png


def upload(client: TestClient, data: bytes, name: str = "digit.png", **params: str):
    return client.post("/predict/mnist", params=params, files={"file": (name, data, "image/png")})


def batch_sizes(client: TestClient) -> tuple[float, float]:
    """The tasks sent so far and the images they carried, from ``/metrics``."""
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }
    return values["mnist_task_batch_size_count"], values["mnist_task_batch_size_sum"]


def job_record(client: TestClient, job_id: str) -> str:
    """The job's record, ``<task id>:<index>``, from the app's (in-process) Redis."""
    redis = client.app.state.store.redis  # type: ignore[attr-defined]
    record = client.portal.call(redis.get, JOB_KEY_PREFIX + job_id)  # type: ignore[union-attr]
    assert record is not None, job_id
    return record.decode() if isinstance(record, bytes) else str(record)


def test_sync_prediction_answers_the_digit(client: TestClient, digits: list[np.ndarray]) -> None:
    answers = []
    for digit, image in enumerate(digits):
        response = upload(client, png(image))
        assert response.status_code == 200
        body = response.json()
        assert isinstance(body["prediction"], str)
        assert 0.0 <= body["confidence"] <= 1.0
        assert body["top3"][0]["digit"] == body["prediction"]
        assert body["top3"][0]["probability"] == body["confidence"]
        assert body["job_id"] and body["model_version"]
        answers.append(body["prediction"] == str(digit))
    assert sum(answers) >= 9  # the small test model is ~95% accurate


def test_async_job_is_accepted_then_polled(client: TestClient, digits: list[np.ndarray]) -> None:
    response = upload(client, png(digits[3]), **{"async": "true"})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert accepted["status_url"] == f"/jobs/{accepted['job_id']}"
    assert response.headers["location"] == accepted["status_url"]

    status = client.get(accepted["status_url"]).json()
    assert status["job_id"] == accepted["job_id"]
    assert status["status"] == "succeeded"
    assert status["error"] is None
    assert status["result"]["prediction"] == "3"
    assert "input_image" not in status["result"]  # only when asked for
    assert status["result"]["job_id"] == accepted["job_id"]


def test_async_job_for_a_blank_image_fails_with_a_clear_error(client: TestClient) -> None:
    accepted = upload(client, png(np.zeros((28, 28), np.uint8)), **{"async": "true"}).json()
    status = client.get(accepted["status_url"]).json()
    assert status["status"] == "failed"
    assert status["error"] == {"code": "no_digit_found", "detail": "No digit found in the image."}


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.get("/jobs/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found (never issued, or expired)."}


@pytest.mark.parametrize(
    ("data", "status", "detail"),
    [
        (b"", 400, "The uploaded file is empty."),
        (b"just some text, not an image", 400, "File provided is not an image."),
        (b"%PDF-1.4\n1 0 obj<<>>endobj", 400, "File provided is not an image."),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 400, "File provided is not an image."),
    ],
)
def test_bad_uploads_get_clear_4xx(
    client: TestClient, data: bytes, status: int, detail: str
) -> None:
    response = upload(client, data)
    assert response.status_code == status
    assert response.json() == {"detail": detail}


def test_not_an_image_is_judged_by_content_not_name(
    client: TestClient, digits: list[np.ndarray]
) -> None:
    assert upload(client, b"GIF? no.", name="real.png").json() == {
        "detail": "File provided is not an image."
    }
    # A real PNG named .txt with a wrong type is still a digit.
    response = client.post(
        "/predict/mnist", files={"file": ("notes.txt", png(digits[1]), "text/plain")}
    )
    assert response.status_code == 200


def test_other_image_formats_are_415(client: TestClient, digits: list[np.ndarray]) -> None:
    for fmt in ("GIF", "BMP", "TIFF"):
        response = upload(client, encode(digits[0], fmt))
        assert response.status_code == 415
        assert fmt in response.json()["detail"]


def test_decompression_bomb_is_413(client: TestClient) -> None:
    bomb = encode(Image.new("1", (30_000, 30_000)), "PNG")
    assert len(bomb) < 200_000
    response = upload(client, bomb)
    assert response.status_code == 413
    assert "30000x30000" in response.json()["detail"]


def test_upload_over_the_size_limit_is_413(client: TestClient, embedded_settings: Settings) -> None:
    limit = embedded_settings.max_upload_bytes
    response = upload(client, b"\x89PNG" + bytes(limit + 10))
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The file is too large: an image may have at most {limit:,} bytes (5.0 MiB)."
    }


def test_a_request_body_over_its_limit_is_413(embedded_settings: Settings) -> None:
    from api.main import create_app

    # A file within its limit, and a form field that takes the body past the allowance.
    settings = embedded_settings.model_copy(update={"max_upload_bytes": 2048})
    with TestClient(create_app(settings)) as small:
        fields = {"note": "x" * 70_000}
        response = small.post(
            "/predict/mnist", files={"file": ("d.png", b"\x89PNG" + bytes(500))}, data=fields
        )
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request is too large: it may have at most 67,584 bytes in all (one "
        "image of at most 2,048 bytes each, plus 64 KiB of form data per image)."
    }


def test_missing_file_field_is_422(client: TestClient) -> None:
    response = client.post("/predict/mnist", files={"image": ("x.png", b"abc", "image/png")})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "The request has no 'file' field: send the image as field 'file'."
    }


def test_json_body_is_422(client: TestClient) -> None:
    response = client.post("/predict/mnist", json={"file": "aGVsbG8="})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "Send the image as multipart/form-data in a field named 'file'."
    }


def test_two_file_parts_are_422(client: TestClient, digits: list[np.ndarray]) -> None:
    files = [("file", ("a.png", png(digits[0]))), ("file", ("b.png", png(digits[1])))]
    response = client.post("/predict/mnist", files=files)
    assert response.status_code == 422
    assert response.json() == {
        "detail": "Send exactly one 'file' part here; use /predict/mnist/batch for several."
    }


def test_bogus_multipart_boundary_is_400(client: TestClient) -> None:
    # The body never reaches the boundary its header announces: a malformed body (400),
    # not a request without a 'file' field (422).
    response = client.post(
        "/predict/mnist",
        content=b'--wrong\r\nContent-Disposition: form-data; name="file"\r\n\r\nxx\r\n--wrong--',
        headers={"content-type": "multipart/form-data; boundary=expected"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "The multipart body is malformed."}


def test_image_without_a_digit_is_422(client: TestClient) -> None:
    response = upload(client, png(np.full((64, 64), 200, np.uint8)))
    assert response.status_code == 422
    assert response.json() == {"detail": "No digit found in the image."}


def test_request_id_is_echoed_or_made(client: TestClient, digits: list[np.ndarray]) -> None:
    given = client.post(
        "/predict/mnist",
        files={"file": ("d.png", png(digits[2]))},
        headers={"X-Request-ID": "abc-123"},
    )
    assert given.headers["x-request-id"] == "abc-123"
    made = upload(client, png(digits[2]))
    assert re.fullmatch("[0-9a-f]{32}", made.headers["x-request-id"])
    # An unsafe id is not echoed (it would go into logs): a fresh one is made instead.
    hostile = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch("[0-9a-f]{32}", hostile.headers["x-request-id"])
    assert hostile.headers["x-request-id"] != made.headers["x-request-id"]


def test_sync_wait_that_runs_out_is_504_with_the_job(
    client: TestClient, digits: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = client.app.state.jobs  # type: ignore[attr-defined]

    async def never_ready(task_id: str, timeout: float) -> None:
        return None

    monkeypatch.setattr(jobs.listener, "wait", never_ready)
    response = upload(client, png(digits[4]))
    assert response.status_code == 504
    body = response.json()
    assert body["status_url"] == f"/jobs/{body['job_id']}"
    # The job was not lost: it can still be polled.
    assert client.get(body["status_url"]).json()["status"] == "succeeded"


def test_unreachable_redis_is_a_fast_503(tmp_path, digits: list[np.ndarray]) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.5)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = upload(client, png(digits[5]))
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert "Redis" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"
        assert elapsed < 2.0
        assert client.get("/jobs/whatever").status_code == 503
        assert client.get("/health").status_code == 200


def test_the_normalised_input_comes_back_on_request(
    client: TestClient, digits: list[np.ndarray]
) -> None:
    plain = upload(client, png(digits[8])).json()
    assert "input_image" not in plain
    body = upload(client, png(digits[8]), include_input="true").json()
    prefix = "data:image/png;base64,"
    assert body["input_image"].startswith(prefix)
    import base64
    import io

    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["input_image"][len(prefix) :]))))
    assert seen.shape == (28, 28)
    # An MNIST digit is already normalised: what the model saw is the upload itself.
    assert np.abs(seen.astype(int) - digits[8].astype(int)).mean() < 3


def test_batch_answers_in_order_and_isolates_bad_files(
    client: TestClient, digits: list[np.ndarray]
) -> None:
    before = batch_sizes(client)
    files = [
        ("file", ("one.png", png(digits[1]))),
        ("file", ("text.png", b"not an image")),
        ("file", ("zero.png", png(digits[0]))),
        ("file", ("blank.png", png(np.zeros((28, 28), np.uint8)))),
        ("file", ("gif.gif", encode(digits[2], "GIF"))),
    ]
    response = client.post("/predict/mnist/batch", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["filename"] for r in results] == [
        "one.png",
        "text.png",
        "zero.png",
        "blank.png",
        "gif.gif",
    ]
    assert [r["status_code"] for r in results] == [200, 400, 200, 422, 415]
    assert results[0]["result"]["prediction"] == "1"
    assert results[2]["result"]["prediction"] == "0"
    assert results[1]["error"]["detail"] == "File provided is not an image."
    assert results[3]["error"]["code"] == "no_digit_found"
    # One task for the whole batch: the three decodable images went in a single task (the
    # two the API refused never left it), and the answered jobs are its items 0 and 1.
    tasks, images = batch_sizes(client)
    assert (tasks - before[0], images - before[1]) == (1, 3)
    one, zero = (job_record(client, results[i]["result"]["job_id"]) for i in (0, 2))
    assert one.rpartition(":")[0] == zero.rpartition(":")[0]
    assert (one.rpartition(":")[2], zero.rpartition(":")[2]) == ("0", "1")


def test_batch_limits(
    client: TestClient, embedded_settings: Settings, digits: list[np.ndarray]
) -> None:
    too_many = [
        ("file", (f"{i}.png", png(digits[i % 10])))
        for i in range(embedded_settings.max_batch_files + 1)
    ]
    response = client.post("/predict/mnist/batch", files=too_many)
    assert response.status_code == 413
    limit = embedded_settings.max_batch_files
    assert response.json() == {"detail": f"At most {limit} files per request."}
    assert client.post("/predict/mnist/batch", files={"other": ("x", b"y")}).status_code == 422
