"""Baseline (a), no queue: the API decodes and predicts inside the request.

The common simple design: the model is loaded once at start-up, and a plain ``def``
endpoint (run in FastAPI's thread pool) reads the upload and predicts with the same
model and the same preprocessing as our worker.

Run: ``MODEL_PATH=... uvicorn bench.baselines.no_queue:app``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, HTTPException, UploadFile

from shared.inference import predict_files
from shared.model import load
from shared.settings import get_settings

settings = get_settings()
model = load(Path(settings.model_path))
app = FastAPI(title="baseline: no queue")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict/mnist")
def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI's idiom
    data = file.file.read()
    item = predict_files([data], model, settings.max_image_pixels)[0]
    if item["error"] is not None:
        raise HTTPException(status_code=400, detail=item["error"]["detail"])
    return {**item["prediction"], "model_version": model.version}
