"""Train PyTorch-BigGraph from a JSON config and time it (the PBG side of
``benchmarks/partitioned.py``, which runs this file in its own process so that the
process tree's memory is PBG's alone: nothing of graphrec is imported here).

    python benchmarks/pbg_train.py CONFIG.json TIMING.json

``CONFIG.json``: a dict that :func:`torchbiggraph.config.parse_config` accepts (the same
keys as a PBG config file's ``get_torchbiggraph_config()``). ``TIMING.json`` (written on
success)::

    {"train_seconds": wall seconds of torchbiggraph.train.train(config) (its worker pool,
                      every bucket's load/train/write-back and every epoch's checkpoint),
     "import_seconds": seconds to import torch and torchbiggraph,
     "buckets": [{"index", "count" (edges trained), "seconds" (since train() started)}]}

torchbiggraph 1.0.0 runs on torch 2.13 with one compatibility fix, applied here only
(:func:`patch_unpack_optional`), and its deprecation warnings (``pkg_resources``,
``TypedStorage``) silenced, in this process and in its spawned HOGWILD workers
(``PYTHONWARNINGS``, set before the workers start).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# inherited by the "spawn" worker pool PBG creates, which re-imports torchbiggraph
os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")


def patch_unpack_optional() -> None:
    """Compat fix: ``torchbiggraph.schema.unpack_optional`` recognises ``Optional[X]`` by
    identity (``type_ is Optional[X]``), which holds only while ``typing``'s small cache
    still holds that object; on Python 3.11 importing ``torchbiggraph.train`` (and torch's
    modules) evicts it, so writing a checkpoint's config (``ConfigSchema.to_dict``) fails
    with ``NotImplementedError: Unknown type: typing.Optional[float]``. Compare by
    structure instead (``Union[X, None]``), which is what the identity test meant."""
    import typing

    from torchbiggraph import schema

    def unpack_optional(type_):
        args = typing.get_args(type_)
        if typing.get_origin(type_) is not typing.Union or len(args) != 2 or args[1] is not type(None):
            raise TypeError("Not an optional type")
        return args[0]

    schema.unpack_optional = unpack_optional


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: pbg_train.py CONFIG.json TIMING.json", file=sys.stderr)
        return 2
    config_path, timing_path = (Path(a) for a in argv)
    t0 = time.perf_counter()
    import warnings

    warnings.simplefilter("ignore", UserWarning)
    from torchbiggraph.config import parse_config
    from torchbiggraph.train import train_and_report_stats
    from torchbiggraph.util import SubprocessInitializer, setup_logging

    import_seconds = time.perf_counter() - t0
    patch_unpack_optional()
    setup_logging()
    config = parse_config(json.loads(config_path.read_text()))
    buckets = []
    t0 = time.perf_counter()
    for index, _before, stats, _after in train_and_report_stats(config, subprocess_init=SubprocessInitializer()):
        buckets.append({"index": int(index), "count": int(stats.count), "seconds": time.perf_counter() - t0})
    train_seconds = time.perf_counter() - t0
    tmp = timing_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"train_seconds": train_seconds, "import_seconds": import_seconds, "buckets": buckets}))
    tmp.replace(timing_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
