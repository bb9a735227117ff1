"""Approximate top-k indexes behind one interface: ScaNN and faiss (flat, IVF, HNSW).

Each back end is an optional extra (``pip install "torchrs_fn[scann]"`` / ``"torchrs_fn[faiss]"``)
imported only when an index of that kind is built. Every index has the ``BruteForce`` interface:

- ``index(queries, k) -> (scores [B, k], ids [B, k])``, best first;
- ``index.query_with_exclusions(queries, exclusions, k)``: over-fetches ``k + E`` neighbours,
  drops the excluded ids and keeps the best k (a query whose exclusions crowd out its true
  neighbours can get fewer than k: its last slots hold ``-inf`` and ``-1``);
- ``index.recall(queries, k)``: recall@k against the exact ``BruteForce`` answer on the same
  candidates (the fraction of the exact top k the index returns), the number to tune on;
- ``index.save(path)`` / ``Kind.load(path)``: no pickle (faiss's own serialised bytes inside a
  ``serialization.save_tree`` file; ScaNN's own artifact folder of protobuf and ``.npy`` files).

The candidate matrix is kept (float32, on the CPU) so that ``recall`` can compute the exact
answer; pass ``keep_candidates=False`` to drop it when memory matters more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..serialization import load_tree, save_tree
from .brute_force import (
    _check_candidates,
    _check_identifiers,
    _check_k,
    _check_queries,
    brute_force_top_k,
)

__all__ = ["ApproximateIndex", "Faiss", "ScaNN"]


def _import(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(
            f'this index needs the optional package {module!r}: pip install "torchrs_fn[{extra}]"'
        ) from e


def _as_numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


class ApproximateIndex:
    """What every approximate index shares: ids, exclusions, recall, the checks."""

    name = "approximate"

    def __init__(
        self, candidates: torch.Tensor, identifiers: torch.Tensor | None, keep_candidates: bool
    ) -> None:
        _check_candidates(candidates, self.name)
        n = candidates.shape[0]
        if identifiers is not None:
            _check_identifiers(identifiers, n, self.name)
            identifiers = identifiers.detach().to("cpu", torch.int64)
        self.num_candidates, self.dim = n, candidates.shape[1]
        self.identifiers = identifiers
        self.candidates = candidates.detach().to("cpu", torch.float32) if keep_candidates else None

    # -- what a back end implements ------------------------------------------------------------

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [B, k] float32, rows [B, k] int64)``; rows ``-1`` where nothing was found."""
        raise NotImplementedError

    # -- the shared interface --------------------------------------------------------------------

    def _ids(self, rows: torch.Tensor) -> torch.Tensor:
        if self.identifiers is None:
            return rows
        ids = self.identifiers[rows.clamp(min=0)]
        return torch.where(rows < 0, torch.full_like(ids, -1), ids)

    def __call__(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D]`` queries -> ``(scores [B, k], ids [B, k])``, best first (approximate)."""
        _check_queries(queries, self.dim, self.name)
        _check_k(k, self.num_candidates, self.name)
        scores, rows = self._search(_as_numpy(queries), k)
        rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        scores_t = torch.from_numpy(np.asarray(scores, dtype=np.float32))
        scores_t = torch.where(rows_t < 0, torch.full_like(scores_t, float("-inf")), scores_t)
        return scores_t.to(queries.device), self._ids(rows_t).to(queries.device)

    def query_with_exclusions(
        self, queries: torch.Tensor, exclusions: torch.Tensor, k: int = 10
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top k of each query without the ids in its row of ``exclusions`` (``[B, E]`` ids,
        rows when the index has no identifiers; negative entries are padding; an unknown id
        raises ``ValueError``)."""
        from .brute_force import exclusion_rows

        _check_queries(queries, self.dim, self.name)
        _check_k(k, self.num_candidates, self.name)
        exclusion_rows(
            exclusions, queries.shape[0], self.identifiers, self.num_candidates, self.name
        )
        fetch = min(self.num_candidates, k + exclusions.shape[1])
        scores, ids = self(queries, fetch)
        ex = exclusions.to(ids.device).long()
        banned = (ids.unsqueeze(2) == ex.unsqueeze(1)).any(dim=2) & (ids >= 0)
        scores = scores.masked_fill(banned, float("-inf"))
        scores, pick = torch.topk(scores, k, dim=1)
        ids = ids.gather(1, pick)
        return scores, torch.where(torch.isneginf(scores), torch.full_like(ids, -1), ids)

    def recall(self, queries: torch.Tensor, k: int = 10) -> float:
        """Recall@k against the exact top k (``brute_force_top_k`` on the same candidates): the
        mean over queries of |approximate top k ∩ exact top k| / k."""
        if self.candidates is None:
            raise RuntimeError(
                f"{self.name}: built with keep_candidates=False, so recall has no exact answer to compare with"
            )
        _, approx = self(queries, k)
        _, exact = brute_force_top_k(
            queries.detach().to("cpu", torch.float32),
            self.candidates,
            k,
            identifiers=self.identifiers,
        )
        approx = approx.cpu()
        hits = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(dim=2) & (approx >= 0)
        return float(hits.sum()) / float(exact.numel())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(candidates={self.num_candidates}, dim={self.dim})"


class Faiss(ApproximateIndex):
    """A faiss index over inner products: ``kind`` ``"flat"`` (exact, faiss's ``IndexFlatIP``),
    ``"ivf"`` (``IndexIVFFlat``: ``nlist`` k-means cells, ``nprobe`` searched) or ``"hnsw"``
    (``IndexHNSWFlat``: ``hnsw_m`` links per node, ``ef_search`` beam width).

    Args:
        candidates: ``[N, D]`` candidate embeddings.
        identifiers: ``[N]`` integer ids to return instead of rows.
        kind: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        nlist: IVF cells (default about 4·√N).
        nprobe: IVF cells searched per query.
        hnsw_m: HNSW links per node.
        ef_construction: HNSW beam width while building.
        ef_search: HNSW beam width while searching.
        seed: seeds faiss's k-means (IVF training).
        keep_candidates: keep the candidates for ``recall``.
    """

    name = "Faiss"

    def __init__(
        self,
        candidates: torch.Tensor,
        identifiers: torch.Tensor | None = None,
        *,
        kind: str = "ivf",
        nlist: int | None = None,
        nprobe: int = 32,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        seed: int = 0,
        keep_candidates: bool = True,
    ) -> None:
        super().__init__(candidates, identifiers, keep_candidates)
        faiss = _import("faiss", "faiss")
        if kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"Faiss: kind must be 'flat', 'ivf' or 'hnsw', got {kind!r}")
        data = _as_numpy(candidates)
        d, n = self.dim, self.num_candidates
        self.kind = kind
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = nlist or max(1, min(n // 39, int(4 * n**0.5)))
            if not 1 <= nlist <= n:
                raise ValueError(f"Faiss: nlist must lie in [1, {n}], got {nlist}")
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(data)
            index.nprobe = min(nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        index.add(data)
        self.index = index

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index (faiss's serialised bytes, the ids, the candidates if kept)."""
        faiss = _import("faiss", "faiss")
        body: dict[str, Any] = {
            "faiss": torch.from_numpy(faiss.serialize_index(self.index).copy()),
            "kind": torch.tensor(list(self.kind.encode()), dtype=torch.uint8),
        }
        if self.identifiers is not None:
            body["identifiers"] = self.identifiers
        if self.candidates is not None:
            body["candidates"] = self.candidates
        save_tree(path, {"faiss_index": body})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Faiss:
        """Read an index written by ``save``."""
        faiss = _import("faiss", "faiss")
        tree = load_tree(Path(path))
        if not isinstance(tree, dict) or "faiss_index" not in tree:
            raise ValueError(f"Faiss.load: {path} holds no Faiss index")
        body = tree["faiss_index"]
        self = cls.__new__(cls)
        self.index = faiss.deserialize_index(body["faiss"].numpy())
        self.kind = bytes(body["kind"].tolist()).decode()
        self.identifiers = body.get("identifiers")
        self.candidates = body.get("candidates")
        self.num_candidates, self.dim = int(self.index.ntotal), int(self.index.d)
        return self


class ScaNN(ApproximateIndex):
    """A ScaNN index over inner products: a k-means tree of ``num_leaves`` partitions, of which
    ``num_leaves_to_search`` are scored per query with anisotropic vector quantisation, then
    the best ``reorder`` are rescored exactly (ScaNN's recommended recipe).

    Args:
        candidates: ``[N, D]`` candidate embeddings.
        identifiers: ``[N]`` integer ids to return instead of rows.
        num_leaves: tree partitions (about √N is ScaNN's advice).
        num_leaves_to_search: partitions scored per query: the speed / recall knob.
        reorder: candidates rescored exactly per query (at least k; raised to k if smaller).
        dimensions_per_block: dimensions per quantisation block.
        anisotropic_quantization_threshold: ScaNN's η threshold for the anisotropic loss.
        training_sample_size: points sampled to train the tree and the quantiser.
        keep_candidates: keep the candidates for ``recall``.
    """

    name = "ScaNN"

    def __init__(
        self,
        candidates: torch.Tensor,
        identifiers: torch.Tensor | None = None,
        *,
        num_leaves: int = 2000,
        num_leaves_to_search: int = 100,
        reorder: int = 250,
        dimensions_per_block: int = 2,
        anisotropic_quantization_threshold: float = 0.2,
        training_sample_size: int = 250_000,
        keep_candidates: bool = True,
    ) -> None:
        super().__init__(candidates, identifiers, keep_candidates)
        _import("scann", "scann")
        from scann.scann_ops.py import scann_ops_pybind

        n = self.num_candidates
        if not 1 <= num_leaves_to_search <= num_leaves:
            raise ValueError(
                f"ScaNN: num_leaves_to_search must lie in [1, num_leaves={num_leaves}], got "
                f"{num_leaves_to_search}"
            )
        data = _as_numpy(candidates)
        self.reorder = reorder
        builder = scann_ops_pybind.builder(data, 10, "dot_product")
        if n >= 2 * num_leaves:
            builder = builder.tree(
                num_leaves=num_leaves,
                num_leaves_to_search=num_leaves_to_search,
                training_sample_size=min(n, training_sample_size),
            )
        builder = builder.score_ah(
            dimensions_per_block,
            anisotropic_quantization_threshold=anisotropic_quantization_threshold,
            training_sample_size=min(n, training_sample_size),
        )
        self.searcher = builder.reorder(reorder).build()
        self.settings = {
            "num_leaves": num_leaves,
            "num_leaves_to_search": num_leaves_to_search,
            "reorder": reorder,
        }

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # ScaNN's thread pool (one thread per core) splits the batch into blocks of 256 queries;
        # a batch smaller than two blocks runs on the calling thread.
        search = (
            self.searcher.search_batched_parallel
            if queries.shape[0] >= 512
            else self.searcher.search_batched
        )
        rows, scores = search(
            queries, final_num_neighbors=k, pre_reorder_num_neighbors=max(k, self.reorder)
        )
        rows = np.asarray(rows, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        if rows.shape[1] < k:  # ScaNN returns fewer columns when it found fewer neighbours
            pad = k - rows.shape[1]
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores, rows

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the folder ``path``: ScaNN's artifacts plus ``torchrs_fn.trs``
        (ids, candidates if kept, settings)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.searcher.serialize(str(folder))
        body: dict[str, Any] = {
            "settings": torch.tensor(list(json.dumps(self.settings).encode()), dtype=torch.uint8),
            "dim": torch.tensor(self.dim),
            "num_candidates": torch.tensor(self.num_candidates),
        }
        if self.identifiers is not None:
            body["identifiers"] = self.identifiers
        if self.candidates is not None:
            body["candidates"] = self.candidates
        save_tree(folder / "torchrs_fn.trs", {"scann_index": body})

    @classmethod
    def load(cls, path: str | os.PathLike) -> ScaNN:
        """Read an index written by ``save``."""
        _import("scann", "scann")
        from scann.scann_ops.py import scann_ops_pybind

        folder = Path(path)
        tree = load_tree(folder / "torchrs_fn.trs")
        if not isinstance(tree, dict) or "scann_index" not in tree:
            raise ValueError(f"ScaNN.load: {folder} holds no ScaNN index")
        body = tree["scann_index"]
        self = cls.__new__(cls)
        self.searcher = scann_ops_pybind.load_searcher(str(folder))
        self.settings = json.loads(bytes(body["settings"].tolist()).decode())
        self.reorder = int(self.settings["reorder"])
        self.identifiers = body.get("identifiers")
        self.candidates = body.get("candidates")
        self.dim, self.num_candidates = int(body["dim"]), int(body["num_candidates"])
        return self
