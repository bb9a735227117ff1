"""examples/serving.py (TFRS efficient_serving) on real MovieLens 100K: the exact index agrees with
itself by construction, so the checks are on the approximate ones against it and on the trained
model being a real one."""

import json
import sys

import pytest
from example_modules import EXAMPLES, load_example


def test_serving_small_corpus(ml100k_dir, capsys):
    sys.path.insert(0, str(EXAMPLES))
    module = load_example("serving")
    argv = ["--data-dir", str(ml100k_dir), "--corpus-size", "5000", "--json"]
    assert module.main([*argv, "--indexes", "brute_force,scann,faiss_ivf"]) == 0
    lines = [
        json.loads(x) for x in capsys.readouterr().out.strip().splitlines() if x.startswith("{")
    ]
    by = {(x["corpus"], x["index"]): x for x in lines}
    assert set(by) == {
        (c, i) for c in ("movies", "synthetic") for i in ("brute_force", "scann", "faiss_ivf")
    }
    assert by[("synthetic", "brute_force")]["candidates"] == 5000
    assert by[("movies", "brute_force")]["recall_at_10"] == 1.0
    for key, line in by.items():
        if "skipped" in line:
            pytest.skip(f"{key[1]}: {line['skipped']}")
        # The approximate indexes, with the example's settings, find most of the exact top 10.
        assert line["recall_at_10"] >= 0.7, (key, line)
        assert line["qps_batch_1000"] > 0 and line["one_query_ms"] > 0
