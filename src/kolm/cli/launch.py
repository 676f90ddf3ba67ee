"""Multi-process entry point: `torchrun --nproc_per_node N -m kolm.cli.launch --config X [key=value ...]`.

Every rank runs the same `pretrain` stage function; rank 0 owns the console,
the manifest, metrics and checkpoints (through `kolm.run.run_stage`), the other
ranks run the stage body silently. DDP or FSDP2 is chosen by
`pretrain.distributed`. The `data` and `tokenizer` stages must have run
(`kolm data`, `kolm tokenizer`) in the same run directory. Without torchrun
this runs the stage in one process, like `kolm pretrain`.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse `--config/--run-dir/overrides`, join the process group, run the pretrain stage; return an exit code."""
    parser = argparse.ArgumentParser(prog="python -m kolm.cli.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="preset name or YAML path")
    parser.add_argument("--run-dir", default=None, help="run directory (default runs/<name>)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. pretrain.distributed=fsdp")
    args = parser.parse_args(argv)

    from kolm.config import load_config
    from kolm.context import StageContext
    from kolm.errors import KolmError
    from kolm.progress import Progress
    from kolm.run import run_stage, staging_dir
    from kolm.runtime import resolve_device, seed_everything
    from kolm.stages import get_stage
    from kolm.train import distributed as dist

    try:
        cfg = load_config(args.config, args.overrides, run_dir=args.run_dir)
        dist.init_distributed(resolve_device(cfg.device))
        if dist.is_main():
            # force: every rank must enter the stage, so rank 0 may not skip it as up to date;
            # with pretrain.resume=auto a finished run only reloads its last checkpoint.
            run_stage(cfg, "pretrain", force=True, progress=Progress())
        else:
            stage = get_stage("pretrain")
            seed_everything(cfg.seed)
            # rank 0 prepares the staging folder before the first barrier inside the stage
            ctx = StageContext(
                cfg=cfg,
                stage=stage,
                run_dir=cfg.run_path,
                out=staging_dir(cfg.run_path, stage),
                progress=Progress(enabled=False),
                device=resolve_device(cfg.device),
            )
            from kolm.train.stage import run

            run(ctx)
    except KolmError as exc:
        if args.debug:
            raise
        print(f"error (rank {dist.rank()}): {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        dist.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
