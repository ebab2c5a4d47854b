"""The model's pipeline: Deskew -> HOG -> PCA -> Nystroem (RBF) -> SGDClassifier.

Why these steps (each measured on MNIST here):

* ``Deskew`` shears every digit upright (image moments) and centres its mass; it removes
  the slant that a linear model cannot.
* ``HOG`` turns pixels into local gradient-orientation histograms, which are far more
  tolerant of stroke width and small shifts than raw pixels: it is what takes the model
  from about 98.9% to over 99.2%. Its cells blend (``HOG(blend=True)``): each shares its
  votes with its neighbours, so a stroke a pixel to one side moves the features a little,
  not across a cell border all at once. At seeds 0 and 1 that took the MNIST test errors
  from 51 and 52 to 42 and 48, and the 5,000 held-out digits' from 31 and 42 to 27 and 40,
  for about 5 microseconds per image (``python -m bench.hog_speed``; README, Model).
* ``PCA`` (70 components) and ``FastNystroem`` (an RBF kernel map on 4,000 landmarks) give
  the linear ``SGDClassifier`` a kernel machine's decision boundary at a linear cost. More
  landmarks buy accuracy with the augmented training set (``shared/augment.py``) but cost
  a worker's batch throughput, which must not fall below the 3,000-landmark model's:
  4,000 is where it still did not on the machines it was chosen on (the README's Model
  section has the measurements, and the machines where it reads below).
* The landmarks are k-means centres, 400 per digit (``kmeans_landmarks``), not random
  training digits: they cover the data more evenly, so the same 4,000 approximate the kernel
  better. On a validation split (fit on 50,000 training digits and their augmented copies,
  score the other 10,000) they made 57-60 errors at gamma 0.023-0.03 where random
  landmarks made 68-72; gamma 0.03 was chosen there. On the MNIST test set: 53 errors
  instead of 57. The k-means takes 12 to 17 s of training; inference costs the same.
* The map keeps the 2,500 leading directions of the landmark kernel (``rank``), 99.6% of
  its trace: the MNIST test errors stayed within what two draws of one recipe differ by
  (42 and 49 at seeds 0 and 1 with all 4,000, 44 and 50 as served), and fitting took
  about 40 s less on a 2-core machine, where training had been 16 s over its 5 minutes
  (README, the rank round).

After training, ``compact`` folds the Nystroem normalisation matrix into the SGD weights
(an exact reparametrisation): prediction skips a 4,000 x 2,500 product per image and the
model file shrinks to about 1.5 MB.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from scipy import linalg
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import kmeans_plusplus
from sklearn.decomposition import PCA
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

CHUNK = 4096  # rows per block in the transforms: bounds memory on the 60,000 images
SIDE = 28
_GRID = np.arange(SIDE, dtype=np.float32)


class Deskew(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Shear each image so its row/column covariance vanishes, with its centre of mass at
    the centre; bilinear interpolation, zero outside. (n, 784) in, float32 (n, 784) out,
    divided by ``scale``. Stateless."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, x: np.ndarray, y: Any = None) -> Deskew:
        self.n_features_in_ = SIDE * SIDE
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x).reshape(-1, SIDE * SIDE)
        out = np.empty(x.shape, np.float32)
        for start in range(0, len(x), CHUNK):
            out[start : start + CHUNK] = self._deskew(x[start : start + CHUNK])
        return out

    def _deskew(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        img = x.reshape(n, SIDE, SIDE).astype(np.float32) * np.float32(1.0 / self.scale)
        total = img.sum((1, 2)) + np.float32(1e-6)
        rows, cols = img.sum(2), img.sum(1)
        mean_r, mean_c = rows @ _GRID / total, cols @ _GRID / total
        dr, dc = _GRID[None] - mean_r[:, None], _GRID[None] - mean_c[:, None]
        var_r = (rows * dr * dr).sum(1) / total
        # (img @ dc) then a row sum: several times faster than a three-operand einsum
        cov_rc = ((img @ dc[:, :, None])[:, :, 0] * dr).sum(1) / total
        alpha = cov_rc / np.maximum(var_r, 1e-6)
        # Output pixel (r, c) samples the source at
        # (r + mean_r - 14, c + alpha (r - 14) + mean_c - 14).
        src_r = _GRID[None] + (mean_r - 14)[:, None]
        src_c = (
            _GRID[None, None]
            + alpha[:, None, None] * (_GRID - 14)[None, :, None]
            + (mean_c - 14)[:, None, None]
        )
        r0f = np.floor(src_r)
        wr = (src_r - r0f)[:, :, None]
        r0 = r0f.astype(np.int32)
        c0f = np.floor(src_c)
        wc = src_c - c0f
        c0 = c0f.astype(np.int32)
        padded = np.zeros((n, SIDE + 2, SIDE + 2), np.float32)
        padded[:, 1:-1, 1:-1] = img
        flat = padded.ravel()
        base = (np.arange(n, dtype=np.int64) * (SIDE + 2) ** 2)[:, None, None]
        top = np.clip(r0 + 1, 0, SIDE + 1)[:, :, None] * (SIDE + 2) + base
        bottom = np.clip(r0 + 2, 0, SIDE + 1)[:, :, None] * (SIDE + 2) + base
        left, right = np.clip(c0 + 1, 0, SIDE + 1), np.clip(c0 + 2, 0, SIDE + 1)
        out = (1 - wr) * ((1 - wc) * flat.take(top + left) + wc * flat.take(top + right)) + wr * (
            (1 - wc) * flat.take(bottom + left) + wc * flat.take(bottom + right)
        )
        deskewed: np.ndarray = out.reshape(n, SIDE * SIDE)
        return deskewed


class HOG(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Histograms of oriented gradients: ``nbins`` signed orientations (linear soft
    binning), magnitudes pooled over ``cell`` x ``cell`` cells, square-rooted. Stateless.

    ``blend`` shares each pixel's vote with the neighbouring cells, as Dalal and Triggs'
    spatial interpolation does, so a stroke that moves by a pixel or two across a cell
    border moves its votes gradually rather than all at once. Votes are first summed in
    half-cells (``cell / 2`` pixels a side), and each half-cell gives 3/4 to its own cell
    and 1/4 to the neighbour on its side (all to its own at the border): two small matrix
    products after the same two ``bincount`` calls. Exact per-pixel weights cost twice
    the time of the whole step for an accuracy within the noise of this one (README,
    Model). Without ``blend`` (models saved before it existed), each pixel votes for its
    own cell only.
    """

    def __init__(self, nbins: int = 8, cell: int = 4, blend: bool = False) -> None:
        self.nbins = nbins
        self.cell = cell
        self.blend = blend

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("blend", False)  # a model saved before ``blend`` voted unblended
        super().__setstate__(state)

    def fit(self, x: np.ndarray, y: Any = None) -> HOG:
        self._check()
        self.n_features_in_ = SIDE * SIDE
        return self

    def _check(self) -> None:
        if self.blend and (self.cell % 2 or SIDE % self.cell):
            raise ValueError(f"blend needs an even cell that divides {SIDE}, not {self.cell}")

    def transform(self, x: np.ndarray) -> np.ndarray:
        self._check()  # also after set_params, which skips fit
        x = np.asarray(x).reshape(-1, SIDE * SIDE)
        cells = SIDE // self.cell
        out = np.empty((len(x), cells * cells * self.nbins), np.float32)
        for start in range(0, len(x), CHUNK):
            out[start : start + CHUNK] = self._hog(x[start : start + CHUNK])
        return out

    def _hog(self, x: np.ndarray) -> np.ndarray:
        n, nbins = len(x), self.nbins
        padded = np.zeros((n, SIDE + 2, SIDE + 2), np.float32)
        padded[:, 1:-1, 1:-1] = x.reshape(n, SIDE, SIDE)
        gx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
        gy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
        magnitude = np.sqrt(gx * gx + gy * gy)
        position = (np.arctan2(gy, gx) + np.float32(np.pi)) * np.float32(nbins / (2 * np.pi))
        # For finite pixels position lies in [0, nbins]; only its top end wraps around.
        # Two comparisons do that for a fraction of what an integer % cost (a fifth of the
        # step). Non-finite pixels never get here: the normaliser's output is finite.
        low_f = np.floor(position)
        upper_share = position - low_f
        low = low_f.astype(np.int32)
        low[low == nbins] = 0
        high = low + 1
        high[high == nbins] = 0
        to_high = magnitude * upper_share
        cells = SIDE // self.cell
        grid, place_key = _vote_places(self.cell, self.blend, nbins)
        key = (np.arange(n, dtype=np.int64) * (grid * grid * nbins))[:, None, None] + place_key
        size = n * grid * grid * nbins
        hist = np.bincount((key + low).ravel(), (magnitude - to_high).ravel(), size)
        hist += np.bincount((key + high).ravel(), to_high.ravel(), size)
        if self.blend:  # in float64 as bincount gives it: a float32 copy would cost more
            shares = _half_cell_shares(cells)
            rows = np.matmul(shares, hist.reshape(n, grid, grid * nbins))
            hist = np.matmul(shares, rows.reshape(n, cells, grid, nbins))
        return np.sqrt(hist.astype(np.float32)).reshape(n, -1)


@functools.cache
def _vote_places(cell: int, blend: bool, nbins: int) -> tuple[int, np.ndarray]:
    """The grid the votes are summed on (the cells, or half-cells when blending), as its
    side and each pixel's offset of its first orientation bin in one image's votes."""
    cells = SIDE // cell
    grid = 2 * cells if blend else cells
    place = np.minimum(np.arange(SIDE) // (cell // 2 if blend else cell), grid - 1)
    place_key = (place[:, None] * grid + place[None, :]) * nbins
    place_key.flags.writeable = False  # cached: one array for every call
    return grid, place_key


@functools.cache
def _half_cell_shares(cells: int) -> np.ndarray:
    """(cells, 2 cells): what each half-cell gives each cell along one axis."""
    shares = np.zeros((cells, 2 * cells))
    for half in range(2 * cells):
        own = half // 2
        neighbour = min(max(own + (1 if half % 2 else -1), 0), cells - 1)
        shares[own, half] += 0.75
        shares[neighbour, half] += 0.25
    shares.flags.writeable = False  # cached: one array for every call
    return shares


def kmeans_landmarks(
    x: np.ndarray, y: np.ndarray | None, count: int, iterations: int, seed: int | None
) -> np.ndarray:
    """``count`` k-means centres of ``x`` as float32 landmarks: per class of ``y`` (an equal
    share each, at most the class's size) or, without labels, over all of ``x``. k-means++
    seeds, then ``iterations`` Lloyd steps in float64. Deterministic for a given seed: each
    class draws from its own generator, whatever the number of processes, and no threads
    split a sum (the distances are BLAS products, the means ``np.add.at``). The classes run
    in a process per core, of one BLAS thread each: k-means++ is a Python loop of small
    products, and two BLAS threads on a busy machine took 3x as long as one."""
    if y is None:
        groups = [x]
        shares = [count]
    else:
        classes = np.unique(y)
        groups = [x[y == label] for label in classes]
        base, extra = divmod(count, len(classes))
        shares = [base + (i < extra) for i in range(len(classes))]
    seeds = np.random.RandomState(seed).randint(2**31 - 1, size=len(groups))
    jobs = [
        (group, min(share, len(group)), int(group_seed))
        for group, share, group_seed in zip(groups, shares, seeds, strict=True)
        if share > 0 and len(group) > 0
    ]
    centres = Parallel(n_jobs=max(1, min(os.cpu_count() or 1, len(jobs))))(
        delayed(_kmeans)(group, k, iterations, group_seed) for group, k, group_seed in jobs
    )
    return np.ascontiguousarray(np.concatenate(centres), dtype=np.float32)


def _kmeans(points: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    with threadpool_limits(1):
        points64 = points.astype(np.float64)
        centres: np.ndarray = kmeans_plusplus(points64, k, random_state=seed)[0]
        norms = (points64**2).sum(1)
        nearest = np.empty(len(points64), np.int64)
        for _ in range(iterations):
            centre_norms = (centres**2).sum(1)
            for start in range(0, len(points64), CHUNK):
                block = slice(start, start + CHUNK)
                distances = (
                    norms[block, None] + centre_norms[None, :] - 2 * (points64[block] @ centres.T)
                )
                nearest[block] = distances.argmin(1)
            counts = np.bincount(nearest, minlength=k)
            sums = np.zeros_like(centres)
            np.add.at(sums, nearest, points64)
            filled = counts > 0  # an emptied centre stays where it was
            centres[filled] = sums[filled] / counts[filled, None]
        return centres


class FastNystroem(Nystroem):  # type: ignore[misc]  # sklearn is untyped
    """scikit-learn's RBF ``Nystroem`` made fast: ``eigh`` on the symmetric landmark kernel
    (several times faster than its SVD), float32 transforms in blocks, cached landmark
    norms, ``fold_into`` for inference, and a ``rank``.

    The map is K V diag(l)^-1/2, where scikit-learn's is K V diag(l)^-1/2 V^T: the same
    features rotated by the eigenvectors V, so the same kernel approximation, and for a
    linear model fitted by plain SGD (rotation-invariant updates and penalty) the same
    model. Rotated, the features come sorted by how much of the kernel they carry (least
    first, ``eigh``'s order), and ``rank`` keeps the leading ones only: the training
    products and the SGD epochs shrink with it, and inference, on the folded raw kernel
    row, costs what it did."""

    def __init__(
        self,
        gamma: float = 0.1,
        n_components: int = 2000,
        random_state: int | None = None,
        *,
        landmarks: str = "random",
        kmeans_iter: int = 10,
        rank: int | None = None,
    ) -> None:
        super().__init__(
            kernel="rbf", gamma=gamma, n_components=n_components, random_state=random_state
        )
        self.landmarks = landmarks
        self.kmeans_iter = kmeans_iter
        self.rank = rank

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("rank", None)  # pickled before ``rank`` existed: every direction
        super().__setstate__(state)

    def fit(self, x: np.ndarray, y: Any = None) -> FastNystroem:
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be None or at least 1, not {self.rank}")
        x = np.asarray(x, np.float32)
        count = min(self.n_components, len(x))  # a small training set has fewer landmarks
        if self.landmarks == "kmeans":
            self.components_ = kmeans_landmarks(
                x, None if y is None else np.asarray(y), count, self.kmeans_iter, self.random_state
            )
        elif self.landmarks == "random":
            picks = np.random.RandomState(self.random_state).permutation(len(x))[:count]
            self.components_ = np.ascontiguousarray(x[picks])
        else:
            raise ValueError(f"landmarks must be 'kmeans' or 'random', not {self.landmarks!r}")
        count = len(self.components_)
        self.components_sqnorm_ = (
            (self.components_.astype(np.float64) ** 2).sum(1).astype(np.float32)
        )
        kernel = self._kernel(self.components_).astype(np.float64)
        kernel = (kernel + kernel.T) / 2
        values, vectors = linalg.eigh(kernel, overwrite_a=True, check_finite=False, driver="evd")
        kept = count if self.rank is None else min(self.rank, count)
        # eigh sorts ascending: the last ``kept`` are the leading directions.
        values, vectors = np.maximum(values[count - kept :], 1e-12), vectors[:, count - kept :]
        self.normalization_: np.ndarray | None = (vectors / np.sqrt(values)).astype(np.float32)
        self.folded_ = False
        self.n_features_in_ = x.shape[1]
        self._n_features_out = kept
        return self

    def _kernel(self, x: np.ndarray) -> np.ndarray:
        distances = (
            (x * x).sum(1)[:, None]
            + self.components_sqnorm_[None, :]
            - 2 * (x @ self.components_.T)
        )
        np.maximum(distances, 0, out=distances)
        distances *= np.float32(-self.gamma)
        kernel: np.ndarray = np.exp(distances, out=distances)
        return kernel

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if len(x) <= CHUNK:
            kernel = self._kernel(x)
            return kernel if self.folded_ else kernel @ self.normalization_
        out = np.empty((len(x), self._n_features_out), np.float32)

        def block(start: int) -> None:
            out[start : start + CHUNK] = self.transform(x[start : start + CHUNK])

        # A block per core, one BLAS thread each: numpy's element-wise passes (the distances,
        # exp) run on one core, so this took 24 s where two-thread BLAS took 28-30 s on random
        # data of the training set's shape; the blocks come out bit for bit the same. The
        # BLAS limit is the process's: meant for training and evaluation, not for concurrent
        # callers (a worker's batches are far below CHUNK rows and never get here).
        starts = range(0, len(x), CHUNK)
        with (
            threadpool_limits(1),
            ThreadPoolExecutor(min(os.cpu_count() or 1, len(starts))) as pool,
        ):
            list(pool.map(block, starts))
        return out

    def fold_into(self, *linears: SGDClassifier) -> None:
        """Scores are (K M) W^T + b = K (W M^T)^T + b: set W <- W M^T for each linear head
        on this map, and let ``transform`` return the raw kernel row. Exact up to float
        rounding; a folded model was trained with a ``rank`` or not, and reads the same."""
        if self.folded_ or self.normalization_ is None:
            return
        normalization = self.normalization_.astype(np.float64)
        for linear in linears:
            weights = linear.coef_.astype(np.float64) @ normalization.T
            linear.coef_ = weights.astype(linear.coef_.dtype)
            linear.n_features_in_ = weights.shape[1]
        self.normalization_ = None
        self.folded_ = True
        self._n_features_out = len(self.components_)  # the raw kernel row, one per landmark


PARAMS: dict[str, Any] = {
    "nbins": 12,
    "cell": 4,
    "blend": True,
    "pca_components": 70,
    "gamma": 0.03,
    "nystroem_components": 4000,
    "landmarks": "kmeans",
    "kmeans_iter": 10,
    "nystroem_rank": 2500,
    "loss": "hinge",
    "alpha": 1e-5,
    "epochs": 20,
}


def build_pipeline(seed: int) -> Pipeline:
    """The untrained pipeline; inputs are (n, 784) float32 pixels in [0, 1]."""
    p = PARAMS
    return Pipeline(
        [
            ("deskew", Deskew(scale=1.0)),
            ("hog", HOG(nbins=p["nbins"], cell=p["cell"], blend=p["blend"])),
            # covariance_eigh: exact, and fast when samples far outnumber features.
            ("pca", PCA(p["pca_components"], svd_solver="covariance_eigh", random_state=seed)),
            (
                "nystroem",
                FastNystroem(
                    gamma=p["gamma"],
                    n_components=p["nystroem_components"],
                    random_state=seed,
                    landmarks=p["landmarks"],
                    kmeans_iter=p["kmeans_iter"],
                    rank=p["nystroem_rank"],
                ),
            ),
            ("sgd", build_head(seed)),
        ]
    )


def build_head(seed: int, epochs: int = PARAMS["epochs"]) -> SGDClassifier:
    """An untrained final estimator: a linear SVM (hinge loss) fitted by SGD."""
    p = PARAMS
    return SGDClassifier(
        loss=p["loss"],
        alpha=p["alpha"],
        max_iter=epochs,
        tol=None,
        shuffle=True,
        random_state=seed,
        n_jobs=2,
    )


def fit_features(
    pipeline: Pipeline, x: np.ndarray, y: np.ndarray, report: Callable[[str], None]
) -> np.ndarray:
    """Fit every step before the final estimator, one timed progress line each; returns
    ``x`` as the final estimator sees it, so more than one head can be fitted on it."""
    for name, step in pipeline.steps[:-1]:
        started = time.perf_counter()
        x = step.fit_transform(x, y)
        report(f"train:   {name:<9} {time.perf_counter() - started:6.1f}s -> {x.shape[1]} features")
    return x


def fit_head(
    head: SGDClassifier, x: np.ndarray, y: np.ndarray, name: str, report: Callable[[str], None]
) -> SGDClassifier:
    started = time.perf_counter()
    head.fit(x, y)
    report(f"train:   {name:<9} {time.perf_counter() - started:6.1f}s on {len(y)} images")
    return head


def compact(pipeline: Pipeline, *more_heads: SGDClassifier) -> Pipeline:
    """Fold the Nystroem normalisation into the SGD weights of the pipeline's own head and
    of ``more_heads`` fitted on the same features (see the module docstring)."""
    pipeline.named_steps["nystroem"].fold_into(pipeline.named_steps["sgd"], *more_heads)
    return pipeline


def describe(pipeline: Pipeline) -> str:
    return " -> ".join(type(step).__name__ for _, step in pipeline.steps)


def summary_params(pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline's parameters as JSON-safe values (for the metadata file)."""
    out: dict[str, Any] = {}
    for name, step in pipeline.steps:
        for key, value in step.get_params(deep=False).items():
            if value is None or isinstance(value, bool | int | float | str):
                out[f"{name}__{key}"] = value
    return out


class CompiledScorer:
    """A fitted, compacted pipeline as a few numpy operations.

    The same scores as ``pipeline.decision_function`` (checked at load time) without
    scikit-learn's per-call validation and routing, which cost about a third of the time
    of predicting one image. With ``mnist_head``, a second head fitted on the same features
    (``shared.model``), rows marked as MNIST digits are scored by that head instead: the
    features are computed once, and each row is multiplied by one head's weights only.
    """

    def __init__(self, pipeline: Pipeline, mnist_head: SGDClassifier | None = None) -> None:
        steps = pipeline.named_steps
        self.deskew: Deskew = steps["deskew"]
        self.hog: HOG = steps["hog"]
        nystroem: FastNystroem = steps["nystroem"]
        if not nystroem.folded_:
            raise ValueError("compile a compacted pipeline (see compact())")
        pca: PCA = steps["pca"]
        self.pca_mean = pca.mean_.astype(np.float32)
        self.pca_projection = np.ascontiguousarray(pca.components_.T, dtype=np.float32)
        # The RBF exponent -g |x - c|^2 = x . (2g c) - g |c|^2 - g |x|^2: with a column of
        # ones after x, one matrix product gives all but the last term, which saves four
        # passes over the (images x landmarks) array (measured: the kernel step 1.6x faster).
        gamma = float(nystroem.gamma)
        landmarks = nystroem.components_.astype(np.float64)
        self.gamma = np.float32(gamma)
        self.landmark_terms = np.ascontiguousarray(
            np.vstack([2 * gamma * landmarks.T, -gamma * (landmarks**2).sum(1)[None, :]]),
            dtype=np.float32,
        )
        self.head = _Weights(steps["sgd"])
        self.mnist_head = None if mnist_head is None else _Weights(mnist_head)

    def kernel(self, x: np.ndarray) -> np.ndarray:
        """The (folded) Nystroem features of (n, 784) pixels: what the heads score."""
        gradients = self.hog.transform(self.deskew.transform(x))
        dims = self.pca_projection.shape[1]
        reduced = np.empty((len(gradients), dims + 1), np.float32)
        np.matmul(gradients - self.pca_mean, self.pca_projection, out=reduced[:, :dims])
        reduced[:, dims] = 1.0
        exponent = reduced @ self.landmark_terms
        norms = np.einsum("ij,ij->i", reduced[:, :dims], reduced[:, :dims])
        exponent -= (self.gamma * norms)[:, None]
        np.minimum(exponent, 0.0, out=exponent)  # a distance is never negative
        kernel: np.ndarray = np.exp(exponent, out=exponent)
        return kernel

    def decision_function(self, x: np.ndarray, mnist_rows: np.ndarray | None = None) -> np.ndarray:
        """Scores of the pipeline's head, or of the MNIST head for the rows ``mnist_rows``
        (a boolean mask) marks, where there is one."""
        kernel = self.kernel(x)
        if self.mnist_head is None or mnist_rows is None or not mnist_rows.any():
            return self.head.scores(kernel)
        if mnist_rows.all():
            return self.mnist_head.scores(kernel)
        scores = np.empty((len(kernel), len(self.head.intercept)), np.float32)
        scores[mnist_rows] = self.mnist_head.scores(kernel[mnist_rows])
        scores[~mnist_rows] = self.head.scores(kernel[~mnist_rows])
        return scores


class _Weights:
    """A linear head's weights, laid out for ``kernel @ weights``."""

    def __init__(self, linear: SGDClassifier) -> None:
        self.weights = np.ascontiguousarray(linear.coef_.T, dtype=np.float32)
        self.intercept = linear.intercept_.astype(np.float32)

    def scores(self, kernel: np.ndarray) -> np.ndarray:
        scores: np.ndarray = kernel @ self.weights + self.intercept
        return scores


def compile_pipeline(
    pipeline: Pipeline, probe: np.ndarray, mnist_head: SGDClassifier | None = None
) -> CompiledScorer | None:
    """A ``CompiledScorer`` if the pipeline has our shape and agrees on ``probe`` (with
    ``mnist_head``: both heads do), else None."""
    if [name for name, _ in pipeline.steps] != ["deskew", "hog", "pca", "nystroem", "sgd"]:
        return None
    try:
        scorer = CompiledScorer(pipeline, mnist_head)
    except ValueError:
        return None
    checks = [(pipeline.decision_function(probe), scorer.decision_function(probe))]
    if mnist_head is not None:
        expected = mnist_head.decision_function(pipeline[:-1].transform(probe))
        checks.append((expected, scorer.decision_function(probe, np.ones(len(probe), bool))))
    for expected, fast in checks:
        if not np.array_equal(expected.argmax(1), fast.argmax(1)):
            return None
        if not np.allclose(expected, fast, atol=1e-3):
            return None
    return scorer
