"""The pipeline's own steps: HOG's votes, with and without blending between cells, and the
Nystroem map: its kernel, its rank and its folding into the heads."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import SGDClassifier

from shared import features
from shared.features import HOG, SIDE, FastNystroem


def slow_hog(image: np.ndarray, nbins: int, cell: int, blend: bool) -> np.ndarray:
    """HOG written pixel by pixel from its definition, to check the vectorised one."""
    cells = SIDE // cell
    padded = np.zeros((SIDE + 2, SIDE + 2))
    padded[1:-1, 1:-1] = image.reshape(SIDE, SIDE)
    hist = np.zeros((cells, cells, nbins))

    def shares(index: int) -> dict[int, float]:
        if not blend:
            return {min(index // cell, cells - 1): 1.0}
        half = index // (cell // 2)
        own = half // 2
        neighbour = min(max(own + (1 if half % 2 else -1), 0), cells - 1)
        out = {own: 0.75}
        out[neighbour] = out.get(neighbour, 0.0) + 0.25
        return out

    for r in range(SIDE):
        for c in range(SIDE):
            gx = padded[r + 1, c + 2] - padded[r + 1, c]
            gy = padded[r + 2, c + 1] - padded[r, c + 1]
            magnitude = math.hypot(gx, gy)
            position = (math.atan2(gy, gx) + math.pi) * nbins / (2 * math.pi)
            low = math.floor(position)
            upper = position - low
            for row_cell, row_share in shares(r).items():
                for col_cell, col_share in shares(c).items():
                    weight = magnitude * row_share * col_share
                    hist[row_cell, col_cell, low % nbins] += weight * (1 - upper)
                    hist[row_cell, col_cell, (low + 1) % nbins] += weight * upper
    return np.sqrt(hist).ravel()


@pytest.mark.parametrize(
    ("cell", "blend"), [(4, False), (4, True), (5, False), (2, True), (14, True), (28, True)]
)
def test_hog_matches_its_definition(cell: int, blend: bool) -> None:
    rng = np.random.default_rng(3)
    images = (rng.random((3, SIDE * SIDE)) ** 3).astype(np.float32)
    images[0, :200] = 0  # flat regions: zero gradients vote nothing
    fast = HOG(nbins=12, cell=cell, blend=blend).fit(images).transform(images)
    slow = np.stack([slow_hog(image, 12, cell, blend) for image in images])
    # compared as votes: a square root magnifies float32 rounding in a nearly empty bin
    np.testing.assert_allclose(fast.astype(np.float64) ** 2, slow**2, rtol=1e-4, atol=1e-6)


def modulo_hog(x: np.ndarray, nbins: int, cell: int) -> np.ndarray:
    """The unblended step as it was before ``blend`` (orientation bins wrapped by ``%``)."""
    n, cells = len(x), SIDE // cell
    padded = np.zeros((n, SIDE + 2, SIDE + 2), np.float32)
    padded[:, 1:-1, 1:-1] = x.reshape(n, SIDE, SIDE)
    gx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    gy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    magnitude = np.sqrt(gx * gx + gy * gy)
    position = (np.arctan2(gy, gx) + np.float32(np.pi)) * np.float32(nbins / (2 * np.pi))
    low_f = np.floor(position)
    upper_share = position - low_f
    low = low_f.astype(np.int64) % nbins
    high = (low + 1) % nbins
    cell_of = np.minimum(np.arange(SIDE) // cell, cells - 1)
    cell_key = (cell_of[:, None] * cells + cell_of[None, :]) * nbins
    key = (np.arange(n, dtype=np.int64) * (cells * cells * nbins))[:, None, None] + cell_key
    size = n * cells * cells * nbins
    to_high = magnitude * upper_share
    hist = np.bincount((key + low).ravel(), (magnitude - to_high).ravel(), size)
    hist += np.bincount((key + high).ravel(), to_high.ravel(), size)
    return np.sqrt(hist.astype(np.float32)).reshape(n, -1)


def test_unblended_votes_are_those_models_were_trained_with(
    mnist: tuple[np.ndarray, np.ndarray],
) -> None:
    # Models saved before blending score with this step: its output must not move a bit.
    digits = mnist[0][:500].reshape(500, -1).astype(np.float32) / 255
    noise = np.random.default_rng(6).random((50, SIDE * SIDE)).astype(np.float32)
    for images in (digits, noise):
        np.testing.assert_array_equal(HOG(12, 4).transform(images), modulo_hog(images, 12, 4))


@pytest.mark.parametrize("blend", [False, True])
def test_blocks_of_rows_and_empty_batches(blend: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    images = np.random.default_rng(7).random((5, SIDE * SIDE)).astype(np.float32)
    whole = HOG(12, 4, blend).transform(images)
    monkeypatch.setattr(features, "CHUNK", 2)  # five rows in blocks of 2, 2 and 1
    np.testing.assert_array_equal(HOG(12, 4, blend).transform(images), whole)
    assert HOG(12, 4, blend).transform(images[:0]).shape == (0, 7 * 7 * 12)


@pytest.mark.parametrize("blend", [False, True])
def test_every_vote_is_counted_once(blend: bool) -> None:
    rng = np.random.default_rng(4)
    images = rng.random((5, SIDE * SIDE)).astype(np.float32)
    features = HOG(nbins=12, cell=4, blend=blend).fit(images).transform(images)
    padded = np.pad(images.reshape(-1, SIDE, SIDE), ((0, 0), (1, 1), (1, 1)))
    gx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    gy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    # the features are square roots of the votes, which share out each gradient's magnitude
    np.testing.assert_allclose(
        (features.astype(np.float64) ** 2).sum(1), np.hypot(gx, gy).sum((1, 2)), rtol=1e-4
    )


def rightward_votes_per_cell_column(hog: HOG, image: np.ndarray) -> np.ndarray:
    """The votes of gradients pointing right (bin 2 of 4) in the middle cell rows, which the
    image's top and bottom edges do not reach, summed per cell column, as shares."""
    votes = (hog.fit(image[None]).transform(image.reshape(1, -1)) ** 2).reshape(7, 7, 4)
    per_column = votes[2:5, :, 2].sum(0)
    return np.asarray(per_column / per_column.sum())


@pytest.mark.parametrize(
    ("step", "shares"),
    [
        # a step at column k gives rightward gradients in columns k - 1 and k (one half-cell)
        (1, [1, 0, 0, 0, 0, 0, 0]),  # half-cell 0: the border, all to cell 0
        (5, [0.25, 0.75, 0, 0, 0, 0, 0]),  # half-cell 2, the first of cell 1: 1/4 left
        (7, [0, 0.75, 0.25, 0, 0, 0, 0]),  # half-cell 3, the second of cell 1: 1/4 right
        (27, [0, 0, 0, 0, 0, 0, 1]),  # column 26 only (27 sees the step's far side): border
    ],
)
def test_blending_shares_a_vote_three_to_one_with_the_nearer_neighbour(
    step: int, shares: list[float]
) -> None:
    image = np.zeros((SIDE, SIDE), np.float32)
    image[:, step:] = 1.0
    blended = rightward_votes_per_cell_column(HOG(nbins=4, cell=4, blend=True), image)
    np.testing.assert_allclose(blended, shares, atol=1e-6)
    hard = rightward_votes_per_cell_column(HOG(nbins=4, cell=4), image)
    np.testing.assert_allclose(hard, np.eye(7)[min(step // 4, 6)], atol=1e-6)


def test_blending_makes_a_one_pixel_shift_change_the_features_less(
    mnist: tuple[np.ndarray, np.ndarray],
) -> None:
    digits = mnist[0][:300].astype(np.float32) / 255
    shifted = np.roll(digits, 1, axis=2)  # MNIST digits have empty borders: nothing wraps
    change = {}
    for blend in (False, True):
        hog = HOG(nbins=12, cell=4, blend=blend).fit(digits)
        before = hog.transform(digits.reshape(300, -1))
        after = hog.transform(shifted.reshape(300, -1))
        change[blend] = np.linalg.norm(after - before, axis=1) / np.linalg.norm(before, axis=1)
    # measured on these 300 digits: a median of 0.58 times the unblended change
    assert np.median(change[True]) < 0.8 * np.median(change[False])


def test_a_model_saved_before_blending_keeps_voting_unblended() -> None:
    state = HOG(nbins=12, cell=4).__getstate__()
    del state["blend"]  # what a pickle from before the parameter holds
    restored = pickle.loads(pickle.dumps(HOG(nbins=12, cell=4, blend=True)))
    assert restored.blend is True
    old = HOG.__new__(HOG)
    old.__setstate__(state)
    assert old.blend is False
    image = np.random.default_rng(5).random((1, SIDE * SIDE)).astype(np.float32)
    np.testing.assert_array_equal(old.transform(image), HOG(12, 4).transform(image))


@pytest.mark.parametrize("cell", [3, 6])
def test_blending_needs_an_even_cell_that_divides_the_side(cell: int) -> None:
    image = np.zeros((1, SIDE * SIDE), np.float32)
    with pytest.raises(ValueError, match="even cell"):
        HOG(cell=cell, blend=True).fit(image)
    changed = HOG(cell=4, blend=True).fit(image).set_params(cell=cell)
    with pytest.raises(ValueError, match="even cell"):
        changed.transform(image)


def _points(rows: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 8)).astype(np.float32)


def test_the_full_map_approximates_the_kernel_as_scikit_learns_does() -> None:
    x, landmarks = _points(300), 60
    ours = FastNystroem(gamma=0.1, n_components=landmarks, random_state=0).fit(x)
    # Fitted on exactly our landmarks, scikit-learn's map takes them all as its basis.
    theirs = Nystroem(kernel="rbf", gamma=0.1, n_components=landmarks).fit(ours.components_)
    mapped = ours.transform(x).astype(np.float64)
    assert mapped.shape == (300, landmarks)
    np.testing.assert_allclose(
        mapped @ mapped.T, theirs.transform(x) @ theirs.transform(x).T, atol=2e-4
    )


def test_a_rank_keeps_the_leading_directions_of_the_landmark_kernel() -> None:
    x, landmarks, rank = _points(400), 80, 20
    full = FastNystroem(gamma=0.1, n_components=landmarks, random_state=0).fit(x)
    cut = FastNystroem(gamma=0.1, n_components=landmarks, random_state=0, rank=rank).fit(x)
    assert cut.transform(x).shape == (400, rank)
    # On the landmarks the map's Gram matrix is the kernel's best rank-r approximation:
    # what it leaves out is the largest eigenvalue it dropped.
    kernel = full._kernel(full.components_).astype(np.float64)
    values = np.linalg.eigvalsh(kernel)[::-1]
    mapped = cut.transform(cut.components_).astype(np.float64)
    left_out = np.linalg.norm(kernel - mapped @ mapped.T, ord=2)
    assert left_out == pytest.approx(values[rank], rel=1e-3)
    # The leading directions are the full map's last columns (eigh sorts ascending), the
    # same up to sign: the same Gram matrix.
    leading = full.transform(x).astype(np.float64)[:, -rank:]
    np.testing.assert_allclose(
        leading @ leading.T, cut.transform(x) @ cut.transform(x).T, atol=1e-4
    )


@pytest.mark.parametrize("rank", [None, 25])
def test_folding_the_map_into_the_heads_keeps_their_scores(
    rank: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(features, "CHUNK", 64)  # 500 rows go in blocks, folded or not
    x = _points(500)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    mapper = FastNystroem(gamma=0.1, n_components=60, random_state=0, rank=rank).fit(x)
    mapped = mapper.transform(x)
    heads = [
        SGDClassifier(random_state=seed, max_iter=5, tol=None).fit(mapped, y) for seed in (0, 1)
    ]
    before = [head.decision_function(mapped) for head in heads]
    mapper.fold_into(*heads)
    raw = mapper.transform(x)
    assert raw.shape == (500, 60)
    for head, scores in zip(heads, before, strict=True):
        np.testing.assert_allclose(head.decision_function(raw), scores, rtol=1e-4, atol=1e-4)
    mapper.fold_into(*heads)  # a second fold changes nothing
    np.testing.assert_allclose(heads[0].decision_function(raw), before[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rank", [0, -3])
def test_a_rank_must_keep_a_direction(rank: int) -> None:
    with pytest.raises(ValueError, match="rank"):
        FastNystroem(n_components=10, rank=rank).fit(_points(20))


def test_a_map_pickled_before_ranks_keeps_every_direction() -> None:
    mapper = FastNystroem(gamma=0.1, n_components=30, random_state=0).fit(_points(100))
    state = mapper.__getstate__()
    del state["rank"]  # what a pickle from before the parameter holds
    old = FastNystroem.__new__(FastNystroem)
    old.__setstate__(state)
    assert old.rank is None
    assert old.get_params()["rank"] is None
    np.testing.assert_array_equal(old.transform(_points(5)), mapper.transform(_points(5)))


def test_blocks_transformed_in_threads_are_those_transformed_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(features, "CHUNK", 16)
    x = _points(16 * 5 + 3)
    mapper = FastNystroem(gamma=0.1, n_components=40, random_state=0, rank=30).fit(x)
    alone = np.concatenate([mapper.transform(x[i : i + 16]) for i in range(0, len(x), 16)])
    np.testing.assert_array_equal(mapper.transform(x), alone)


def test_kmeans_landmarks_are_the_same_whatever_the_number_of_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = _points(600)
    y = np.arange(600) % 3
    landmarks = features.kmeans_landmarks(x, y, 30, 4, seed=7)
    assert landmarks.shape == (30, 8)
    monkeypatch.setattr(features.os, "cpu_count", lambda: 1)
    np.testing.assert_array_equal(features.kmeans_landmarks(x, y, 30, 4, seed=7), landmarks)
    assert not np.array_equal(features.kmeans_landmarks(x, y, 30, 4, seed=8), landmarks)
