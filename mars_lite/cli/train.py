"""``mars-lite train``: parse the options, call ``mars_lite.train.train``, print a JSON summary.

Several processes: ``torchrun --nproc_per_node=N -m mars_lite.cli train ...``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

from ..method.loading import config_weights
from ..train.config import MODES, list_train_configs, load_train_config
from ..train.training import train
from .options import PRETRAINED_HELP, add_data_argument, add_on_error_argument


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Options of ``mars-lite train``."""
    parser.description = ("Train MARS on the seen classes of a split (frozen, paper or layernorm backbone "
                          "mode); writes last/best checkpoints, history.json and a resumable state to --out. "
                          "Several processes: torchrun --nproc_per_node=N -m mars_lite.cli train ...")
    parser.add_argument("--config", required=True,
                        help=f"shipped config ({', '.join(list_train_configs())}) or a JSON file of TrainConfig fields")
    add_data_argument(parser, required=True)
    add_on_error_argument(parser)
    parser.add_argument("--out", required=True, help="output folder for checkpoints, history.json and the state")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out (last_state.pt)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (without --resume or --overwrite a folder holding a run "
                            "is refused)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when available)")
    parser.add_argument("--split", help="split name (e.g. tuberlin_split_b) or JSON with seen/unseen lists; "
                        "default: the config's, else <data>/split_zs.json")
    parser.add_argument("--mode", choices=MODES, help="backbone mode, overrides the config")
    parser.add_argument("--model", help="model config name (tiny, mobilenet-minilm, ViT-B-32, ...), overrides the config")
    parser.add_argument("--pretrained", help=PRETRAINED_HELP.split("; with")[0] + " (default: the training config's)")
    parser.add_argument("--epochs", type=int, help="number of epochs (may be raised when resuming)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in total (resume to continue)")
    parser.add_argument("--batch-size", type=int, help="global batch size (split over processes)")
    parser.add_argument("--lr", type=float, help="learning rate of the modality vectors and classifier")
    parser.add_argument("--backbone-lr", type=float, help="learning rate of the CLIP parameters that train")
    parser.add_argument("--seed", type=int, help="seed of model init, epoch orders and validation batches")
    parser.add_argument("--val-fraction", type=float, help="held-out fraction of seen-class images (0 = none)")
    parser.add_argument("--balanced", action="store_const", const=True, help="class-balanced sampling")
    parser.add_argument("--num-workers", type=int, help="DataLoader worker processes for image loading")
    parser.add_argument("--cache-dir", help="embedding cache folder for frozen mode")
    parser.add_argument("--init-checkpoint", help="start from this mars_lite checkpoint (e.g. frozen mode on "
                        "top of a paper-mode run)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines and no progress bars")
    parser.set_defaults(func=_cli_main)


def _cli_main(args: argparse.Namespace) -> int:
    pretrained = args.pretrained
    # config field -> the option that sets it, so a bad value is blamed on the flag, not the config file
    flags = {"split": "--split", "mode": "--mode", "model": "--model", "epochs": "--epochs",
             "max_steps": "--max-steps", "batch_size": "--batch-size", "lr": "--lr", "backbone_lr": "--backbone-lr",
             "seed": "--seed", "val_fraction": "--val-fraction", "balanced_sampler": "--balanced",
             "num_workers": "--num-workers", "cache_dir": "--cache-dir", "init_checkpoint": "--init-checkpoint"}
    overrides = {field: getattr(args, flag[2:].replace("-", "_"))
                 for field, flag in flags.items()}
    cfg = load_train_config(args.config, flags=flags, **overrides)
    if pretrained is not None:  # given on the command line: 'none' means random init, 'default' the model's own
        cfg = dataclasses.replace(cfg, pretrained=config_weights(cfg.model, pretrained))
    result = train(cfg, args.data, args.out, device=args.device, resume=args.resume, overwrite=args.overwrite,
                   on_error=args.on_error,
                   progress=False if args.quiet else None, verbose=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        best = result.epoch_values("val_map")
        summary = {"out_dir": str(result.out_dir), "best_checkpoint": str(result.best_checkpoint),
                   "best_epoch": result.best_epoch, "epochs_completed": result.epochs_completed,
                   "steps": result.global_step, "stopped_early": result.stopped_early,
                   "val_map": best[-1][1] if best else None, "seconds": round(result.seconds, 2)}
        print(json.dumps(summary))
    return 0
