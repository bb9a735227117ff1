"""DotInteraction inside a compiled sweep: torch 2.13 compiles vmap(grad(index_select)) into a
gradient multiplied by the vmap batch size; the layer selects by advanced indexing, and this
checks a compiled vmap of grad through a DLRM against eager."""

import pytest
import torch

import torchrs_fn as rs
from torchrs_fn import tree
from torchrs_fn.models import DLRM

G = torch.Generator().manual_seed(3)
DENSE = torch.randn(5, 3, generator=G, dtype=torch.float64)
IDS = torch.stack([torch.randint(0, v, (5,), generator=G) for v in (6, 4, 5)], dim=1)
LABELS = torch.randint(0, 2, (5,), generator=G).double()
MODEL = DLRM(3, [6, 4, 5], 4, bottom_units=(6, 4), top_units=(8, 1))


def _loss(params):
    logits = rs.apply(MODEL, params, DENSE, IDS)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, LABELS)


@pytest.mark.compile
def test_compiled_vmap_of_grad_matches_eager():
    stacked = tree.stack([rs.init(MODEL, seed=s, dtype=torch.float64) for s in (1, 2)])
    grad = torch.func.grad(_loss)
    swept = torch.compile(torch.vmap(grad), fullgraph=True)(stacked)
    assert tree.allclose(swept, torch.vmap(grad)(stacked), rtol=1e-10, atol=1e-12)
