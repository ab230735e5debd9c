import os
import subprocess
import sys

SCRIPT = """
import sys, warnings
from graphrec.run.config import TwHINConfig
from graphrec.train.runs import fit
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    fit(TwHINConfig(dim=8, epochs=1, batch_size=512, optimizer="adagrad"), sys.argv[1], sys.argv[2], use_ray=False)
print(any("Sparse invariant checks" in str(w.message) for w in seen))
"""


def test_fit_keeps_torchs_sparse_gradient_notices_from_api_callers(small_pins_graph, tmp_path):
    """Notebook and script callers of ``fit`` see results, not torch's "Sparse invariant
    checks are implicitly disabled" notice from sparse Adagrad steps (the CLI hid it
    already). Each case runs in a fresh process: torch warns once per process."""

    def notice_shown(out: str) -> bool:
        env = {k: v for k, v in os.environ.items() if k != "GRAPHREC_DEBUG"}  # GRAPHREC_DEBUG would keep it
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(small_pins_graph.path), str(tmp_path / out)],
                              env=env, capture_output=True, text=True, timeout=300, check=True)
        return done.stdout.strip().splitlines()[-1] == "True"

    # the notice exists in this torch (a sparse Adagrad step of its own), so hiding it is not vacuous
    step = ("import torch, warnings; e = torch.nn.Embedding(4, 2, sparse=True); o = torch.optim.Adagrad(e.parameters())\n"
            "with warnings.catch_warnings(record=True) as seen:\n    warnings.simplefilter('always')\n"
            "    e(torch.tensor([1])).sum().backward(); o.step()\n"
            "print(any('Sparse invariant checks' in str(w.message) for w in seen))")
    assert subprocess.run([sys.executable, "-c", step], capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip() == "True"
    assert not notice_shown("quiet")


def test_the_configs_threads_do_not_outlive_the_run(small_pins_graph, tmp_path):
    """``threads: 1`` sets torch's threads for an in-process run; a notebook that called
    ``fit`` keeps its own thread count afterwards (a partitioned run too)."""
    import torch

    from graphrec.run.config import TwHINConfig
    from graphrec.train.runs import fit

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for extra in ({}, {"partitions": 2, "validation": {"source": "none"}}):
            fit(TwHINConfig(dim=8, epochs=1, batch_size=512, threads=1, **extra), small_pins_graph.path,
                tmp_path / f"run{len(extra)}", use_ray=False)
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
