"""``siderctl enqueue QUEUE``: typed flags come from the queues' payload schemas."""

import inspect
import re
import sys
from typing import Annotated, Any

import typer

from siderctl import ops, render
from siderctl.cli import common
from siderctl.errors import UsageError
from siderctl.queues import QUEUES, PayloadField, all_fields


def _param_name(field: PayloadField) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), field.name)


def _field_help(field: PayloadField) -> str:
    used_by = [q.name for q in QUEUES.values() if any(f.name == field.name for f in q.fields)]
    choices = f" One of: {', '.join(field.choices)}." if field.choices else ""
    return f"[{', '.join(used_by)}] {field.help}{choices}"


def _field_parameters() -> list[inspect.Parameter]:
    return [
        inspect.Parameter(
            _param_name(field),
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, typer.Option(field.flag, help=_field_help(field), show_default=False)],
        )
        for field in all_fields()
    ]


def enqueue(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help=f"Queue: {', '.join(QUEUES)}.", autocompletion=common.complete_queue,
                                         show_default=False)],
    payload: Annotated[str | None, typer.Option(
        "--payload", help="Whole JSON payload: '{...}', @FILE or - for stdin. Typed flags override its fields.",
        show_default=False)] = None,
    jsonl: Annotated[str | None, typer.Option(
        "--jsonl", help="FILE or - : one JSON payload per line, enqueued in one batch (all validated first).",
        show_default=False)] = None,
    job_id: Annotated[str | None, typer.Option(
        "--job-id", help="Explicit job id; if it exists, nothing is enqueued (exit 6).", show_default=False)] = None,
    delay: Annotated[str | None, typer.Option("--delay", help="Run after this long: 30s, 5m, 1h.",
                                              show_default=False)] = None,
    at: Annotated[str | None, typer.Option("--at", help="Run at this ISO-8601 time (2026-01-31T12:00:00Z).",
                                           show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of the job id.")] = False,
    **fields: Any,
) -> None:
    """Add a job (or a batch) to QUEUE and print its id."""
    if payload is not None and jsonl is not None:
        raise UsageError("use either --payload or --jsonl, not both")
    flags = {field.name: fields.get(_param_name(field)) for field in all_fields()}
    if jsonl is not None:
        text = sys.stdin.read() if jsonl == "-" else ops.read_file(jsonl, "--jsonl")
        bases: list[tuple[int | None, Any]] = list(ops.parse_jsonl(text, "--jsonl"))
    elif payload is not None:
        bases = [(None, ops.parse_json(ops.read_argument(payload, sys.stdin, "--payload"), "--payload"))]
    else:
        bases = [(None, None)]
    request = ops.new_request(queue, bases=bases, flags=flags, job_id=job_id, delay=delay, at=at)
    jobs = ops.enqueue(common.config(ctx), request)
    if not json_out:
        render.enqueued(jobs)
    elif jsonl is None:
        render.emit_json(jobs[0].as_dict())
    else:
        render.emit_json({"queue": queue, "count": len(jobs), "jobs": [job.as_dict() for job in jobs]})


def register(app: typer.Typer) -> None:
    """Add the enqueue command, with one typed flag per payload field, to ``app``."""
    signature = inspect.signature(enqueue)
    fixed = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    command = common.boundary(enqueue)
    command.__signature__ = signature.replace(parameters=[*fixed, *_field_parameters()])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}  # type: ignore[attr-defined]
    app.command("enqueue")(command)


