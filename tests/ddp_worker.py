"""Run by tests/test_training.py under ``python -m torch.distributed.run --nproc_per_node=2``.

Joins one gloo process group and trains each given config in turn (one run per mode), so a
single launch checks both the frozen and the through-the-backbone paths.
Usage: ddp_worker.py DATA_ROOT OUT_ROOT CONFIG_JSON [CONFIG_JSON ...]; run NAME goes to OUT_ROOT/NAME
where NAME is the config file's stem.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from mars_lite.train.training import train


def main(argv: list[str]) -> int:
    data_root, out_root, configs = argv[0], Path(argv[1]), argv[2:]
    dist.init_process_group("gloo")
    try:
        for config in configs:
            train(config, data_root, out_root / Path(config).stem, device="cpu", verbose=False, progress=False)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
