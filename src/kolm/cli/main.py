"""The `kolm` command line: parses, loads the config, calls a stage. Nothing else.

Stage commands are generated from the stage table (`kolm.stages.STAGES`); the
other commands come from the TOOLS table below. Errors a user can cause print
one line and exit with code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from kolm.stages import STAGES, Stage

# Commands that are not pipeline stages: name -> "module:function" (a typer command function).
TOOLS: dict[str, str] = {
    "doctor": "kolm.cli.doctor:command",
    "pipeline": "kolm.cli.pipeline:command",
    "report": "kolm.cli.report:command",
    "merge": "kolm.cli.merge:command",
    "generate": "kolm.cli.generate:command",
    "chat": "kolm.cli.chat:command",
    "export": "kolm.cli.export:command",
    "quantize": "kolm.cli.quantize:command",
    "push": "kolm.cli.push:command",
    "serve": "kolm.cli.serve:command",
    "ui": "kolm.cli.ui:command",
    "arch": "kolm.cli.arch:command",
}

# Stage options that stand for a config override: stage -> (option name, config key, help).
# `kolm finetune --task klue-sts` is `kolm finetune finetune.tasks=[klue-sts]`.
SHORTCUTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "finetune": (
        (
            "task",
            "finetune.tasks",
            "tasks to run, comma-separated: classify, sft, klue-sts, klue-ner, klue-mrc, klue-re",
        ),
    ),
    "eval": (
        ("suite", "eval.suite", "klue: only the KLUE benchmark table (KLUE 벤치마크 표)"),
        ("model", "eval.model", "model dir to evaluate (with --suite klue: a run dir, finetune dir or task model)"),
        ("quant", "eval.quant", "evaluate quantized: int8 (CPU dynamic), bf16, nf4 / llm-int8 (CUDA) (양자화)"),
    ),
}

HELP = """kolm: 한국어 LLM을 처음부터 — from raw Korean text to a served, aligned chat model.

Each stage reads and writes a run directory (runs/<name>/). Start with
`kolm doctor`, then `kolm pipeline --config tiny`.
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

ConfigOpt = typer.Option(None, "--config", "-c", help="preset name (tiny, small, base) or YAML file (설정 파일)")
RunDirOpt = typer.Option(None, "--run-dir", help="run directory (default: runs/<name>)")
ForceOpt = typer.Option(False, "--force", help="re-run even when inputs and config are unchanged")
DebugOpt = typer.Option(False, "--debug", help="show full tracebacks")


def split_args(stage: Stage, args: list[str]) -> tuple[str | None, list[str]]:
    """Separate an optional leading action (`compare`) from `key=value` overrides."""
    if args and "=" not in args[0]:
        if args[0] in stage.actions:
            return args[0], args[1:]
        from kolm.errors import KolmError

        valid = ", ".join(stage.actions) if stage.actions else "none"
        raise KolmError(
            f"'{args[0]}' is neither an override (key=value) nor an action of '{stage.name}' (actions: {valid})"
        )
    return None, list(args)


def shortcut_overrides(stage: str, values: dict[str, str | None]) -> list[str]:
    """The `key=value` overrides that a stage's shortcut options stand for (lists for list-valued keys)."""
    out = []
    for name, key, _ in SHORTCUTS.get(stage, ()):
        value = values.get(name)
        if value:
            out.append(f"{key}=[{value}]" if key == "finetune.tasks" else f"{key}={value}")
    return out


def _with_shortcuts(command: Callable[..., None], stage: Stage) -> Callable[..., None]:
    """Give `command` one `--name` option per shortcut of `stage` (typer reads the signature)."""
    import inspect

    extras = SHORTCUTS.get(stage.name, ())
    sig = inspect.signature(command)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, f"--{name}", help=text),
            annotation=Optional[str],
        )
        for name, _, text in extras
    ]
    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return command


def _stage_command(stage: Stage) -> Callable[..., None]:
    actions = f" Actions: {', '.join(stage.actions)}." if stage.actions else ""

    def command(
        args: Optional[List[str]] = typer.Argument(
            None,
            metavar="[ACTION] [KEY=VALUE]...",
            help="optional action, then overrides such as pretrain.max_steps=50 (설정 덮어쓰기)",
        ),
        config: Optional[str] = ConfigOpt,
        run_dir: Optional[Path] = RunDirOpt,
        force: bool = ForceOpt,
        debug: bool = DebugOpt,
        **shortcuts: Optional[str],
    ) -> None:
        from kolm.config import load_config
        from kolm.progress import Progress
        from kolm.run import run_stage

        action, overrides = split_args(stage, args or [])
        overrides += shortcut_overrides(stage.name, shortcuts)
        cfg = load_config(config, overrides, run_dir=run_dir)
        with Progress() as progress:
            result = run_stage(cfg, stage.name, action=action, force=force, progress=progress)
        where = cfg.run_path / stage.dir
        state = "up to date" if result is None else "done"
        typer.echo(f"{stage.name}{' ' + action if action else ''}: {state} -> {where}")
        if stage.name == "eval" and cfg.eval.suite and (where / f"{cfg.eval.suite}.md").is_file():
            typer.echo((where / f"{cfg.eval.suite}.md").read_text(encoding="utf-8").rstrip())  # the suite's table

    command.__doc__ = f"{stage.help}. Writes {stage.produces}.{actions}"
    return _with_shortcuts(command, stage)


def _load(entry: str) -> Callable[..., Any]:
    module_name, func = entry.split(":")
    return getattr(importlib.import_module(module_name), func)


def build_app() -> typer.Typer:
    """Register one command per stage and per tool (one source of truth: the tables)."""
    for stage in STAGES:
        app.command(name=stage.name, help=None)(_stage_command(stage))
    for name, entry in TOOLS.items():
        app.command(name=name)(_load(entry))
    return app


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    from kolm.errors import KolmError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not debug:
        _quiet_libraries()
    build_app()
    try:
        code = app(args=argv, standalone_mode=False)
    except KolmError as exc:
        if debug:
            raise
        _fail(str(exc), exc.exit_code)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        _fail(f"{exc.strerror or exc}: {exc.filename} (check the path)", 2)
    except UnicodeDecodeError as exc:
        if debug:
            raise
        _fail(f"input is not UTF-8 text ({exc.reason}); convert it to UTF-8 (예: iconv -f cp949 -t utf-8)", 2)
    except KeyboardInterrupt:
        _fail("interrupted (중단됨); finished stages and checkpoints are kept, re-run to continue", 130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _quiet_libraries() -> None:
    """Keep the console to kolm's own progress: no per-load bars or load reports from the HF libraries.

    Set through environment variables before those libraries are imported, and
    only for the command line (`--debug` keeps everything).
    """
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # reaches worker processes too
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")


def _fail(message: str, code: int) -> None:
    first = message.strip().splitlines()
    text = "\n".join(first) if first else message
    sys.stderr.write(f"kolm: error: {text}\n(run again with --debug for the traceback)\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
