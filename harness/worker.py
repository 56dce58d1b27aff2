"""The model side: the only module that imports paddle and ppdet, always in a subprocess of its own.

Why a subprocess per model: ppdet's `load_config` is process-global state, and a crash or an OOM in a
model must not take the caller (or the other models' results) down. The parent talks to it through
argv and a JSON file; stdout/stderr are a log.

    python -m harness.worker init-weights --ppdet-root DIR --config CFG --out W.pdparams [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _ppdet(root: Path) -> None:
    """Put the pinned PaddleDetection source first on sys.path, the way its tools/eval.py runs."""
    sys.path.insert(0, str(root))


def build_model(config: Path, *, device: str = "cpu", overrides: dict | None = None):
    """Build the architecture of a real config (plus overrides) on `device`; returns (cfg, model)."""
    import paddle
    from ppdet.core.workspace import create, load_config, merge_config

    cfg = load_config(str(config))
    merge_config({"use_gpu": device == "gpu", **(overrides or {})})
    paddle.set_device("gpu" if device == "gpu" else "cpu")
    return cfg, create(cfg.architecture)


def init_weights(root: Path, config: Path, out: Path, seed: int = 0) -> dict:
    """Save the randomly initialised state dict of a config's model as a `.pdparams` (rehearsal zoo).

    Saved with `paddle.save`, the same call ppdet's checkpoint code uses, so the file has the format,
    keys and shapes of a published checkpoint; only the values are random.
    """
    _ppdet(root)
    import paddle

    paddle.seed(seed)
    _, model = build_model(config)
    state = model.state_dict()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    paddle.save(state, str(tmp))
    tmp.replace(out)
    return {"keys": len(state), "params": int(sum(int(v.numel()) for v in state.values())),
            "bytes": out.stat().st_size, "paddle": paddle.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init-weights")
    p.add_argument("--ppdet-root", type=Path, required=True)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = init_weights(args.ppdet_root, args.config, args.out, args.seed)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
