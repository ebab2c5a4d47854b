"""The sample uploads in ``examples/`` that the README's examples use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".png", ".jpg"})


def test_every_example_the_readme_names_exists() -> None:
    named = set(re.findall(r"examples/[\w./-]+\w", (REPO / "README.md").read_text()))
    assert {"examples/seven.png", "examples/notes.txt"} <= named
    for path in named:
        assert (REPO / path).is_file(), path


def test_there_is_one_example_of_each_kind() -> None:
    names = {p.name for p in IMAGES}
    assert names == {"seven.png", "two.png", "four-photo.jpg"}


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_each_example_is_read_as_the_digit_its_name_says(client: TestClient, path: Path) -> None:
    expected = str(WORDS.index(path.stem.split("-")[0]))
    response = client.post("/predict/mnist", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == expected


def test_the_text_example_is_not_an_image(client: TestClient) -> None:
    path = EXAMPLES / "notes.txt"
    response = client.post("/predict/mnist", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 400
    assert response.json() == {"detail": "File provided is not an image."}


def test_the_generator_draws_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import make_examples

    monkeypatch.setattr(make_examples, "EXAMPLES", tmp_path)
    assert make_examples.main() == 0
    for path in [*IMAGES, EXAMPLES / "notes.txt"]:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
