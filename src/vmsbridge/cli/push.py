"""`vmsbridge push`: export an incident and its videos to a vmsbridge / ALO VMS API server."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ._app import app

if TYPE_CHECKING:
    from vmsbridge.client import ProgressEvent

# Keep equal to vmsbridge.client.DEFAULT_CONCURRENCY (a test checks); not imported here so
# that `vmsbridge --help` does not pay for httpx.
DEFAULT_CONCURRENCY = 8

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _usage(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _check_time(name: str, value: str | None) -> None:
    if value is None:
        return
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _usage(f"{name} must be an ISO 8601 time (e.g. 2024-02-02T11:04:12Z), not {value!r}")


@app.command(no_args_is_help=True)
def push(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Video files to upload, or one MANIFEST.json (the spec's incident body with a "
            "local 'path', and optionally 'thumbnail_path', on each video).",
            show_default=False,
        ),
    ],
    incident_id: Annotated[
        str | None, typer.Option("--incident-id", help="Incident id (overrides the manifest's).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="Incident title.")] = None,
    description: Annotated[str | None, typer.Option(help="Incident description.")] = None,
    incident_at: Annotated[
        str | None, typer.Option("--incident-at", help="When it happened (ISO 8601).")
    ] = None,
    latitude: Annotated[float | None, typer.Option(min=-90, max=90)] = None,
    longitude: Annotated[float | None, typer.Option(min=-180, max=180)] = None,
    camera_name: Annotated[
        str | None, typer.Option("--camera-name", help="Camera name for every video given.")
    ] = None,
    api_url: Annotated[
        str | None, typer.Option(envvar="VMSBRIDGE_API_URL", help="Server URL.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="VMSBRIDGE_API_KEY", help="API key.", show_default=False)
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Parts (PUTs) in flight at once.")
    ] = DEFAULT_CONCURRENCY,
    multipart_threshold: Annotated[
        str, typer.Option(help="Files this big or bigger go multipart (e.g. 100MB, 64MiB).")
    ] = "100MB",
    retries: Annotated[int, typer.Option(min=0, max=100, help="Retries per request.")] = 5,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the resume journal lives (default: $XDG_STATE_HOME/vmsbridge or "
            "~/.local/state/vmsbridge)."
        ),
    ] = None,
    no_thumbnails: Annotated[
        bool, typer.Option("--no-thumbnails", help="Do not make thumbnails from key frames.")
    ] = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the server's incident as JSON on stdout (logs stay on stderr)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only errors.")] = False,
) -> None:
    """Upload videos and create/update their incident.

    Exit status: 0 when every video arrived, 1 when some are reported failed (or the
    incident could not be written), 2 for usage errors.
    """
    from vmsbridge.client import (
        Client,
        Incident,
        ManifestError,
        VideoFile,
        VMSBridgeError,
        load_manifest,
        parse_size,
    )

    if not api_url:
        _usage("no API URL: pass --api-url or set VMSBRIDGE_API_URL")
    if not api_key:
        _usage("no API key: pass --api-key or set VMSBRIDGE_API_KEY")
    try:
        threshold = parse_size(multipart_threshold)
    except ValueError as exc:
        _usage(f"--multipart-threshold: {exc}")
    if (latitude is None) != (longitude is None):
        _usage("--latitude and --longitude go together")
    _check_time("--incident-at", incident_at)

    manifests = [s for s in sources if s.suffix.lower() == ".json"]
    if manifests:
        if len(sources) != 1:
            _usage("give either one MANIFEST.json or video files, not both")
        try:
            incident, videos = load_manifest(manifests[0], incident_id=incident_id)
        except ManifestError as exc:
            _usage(str(exc))
    else:
        if not incident_id:
            _usage("--incident-id is required when pushing video files")
        incident = Incident(id=incident_id)
        videos = [VideoFile(path=s, camera_name=camera_name) for s in sources]
    for name, value in (
        ("title", title),
        ("description", description),
        ("incident_at", incident_at),
        ("latitude", latitude),
        ("longitude", longitude),
    ):
        if value is not None:
            setattr(incident, name, value)
    if camera_name is not None:
        for v in videos:
            v.camera_name = camera_name

    stderr_tty = sys.stderr.isatty()
    show = not quiet  # --json changes stdout only; progress and logs go to stderr
    reporter = _make_reporter(rich=show and stderr_tty, plain=show and not stderr_tty, quiet=quiet)
    started = time.monotonic()
    try:
        with (
            Client(
                api_url,
                api_key,
                concurrency=concurrency,
                multipart_threshold=threshold,
                retries=retries,
                state_dir=state_dir,
            ) as client,
            reporter,
        ):
            result = client.push_incident(
                incident, videos, progress=reporter.event, thumbnails=not no_thumbnails
            )
    except VMSBridgeError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted: run the same command again to resume.", err=True)
        raise typer.Exit(130) from None
    except ValueError as exc:  # e.g. a file too big for 10,000 parts of 5 GiB
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    elapsed = time.monotonic() - started

    if json_output:
        typer.echo(json.dumps(result.response, indent=2))
    elif not quiet:
        _print_result(result.response)
    if not quiet:
        from vmsbridge.client import format_size

        sent = result.bytes_sent
        rate = f", {format_size(sent / elapsed)}/s" if elapsed > 0 and sent else ""
        verb = "created" if result.created else "updated"
        typer.echo(
            f"incident {result.incident_id} {verb}: {len(result.uploaded)} uploaded, "
            f"{len(result.failed)} failed; {format_size(sent)} sent in {elapsed:.1f} s{rate}",
            err=True,
        )
    for failed in result.failed:
        typer.echo(f"failed: {failed.id}: {'; '.join(failed.errors)}", err=True)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _print_result(body: dict[str, Any]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console

        Console().print_json(data=body)
    else:
        typer.echo(json.dumps(body, indent=2))


class _Reporter:
    """No progress at all (``--quiet``, ``--json``): only warnings and errors are logged."""

    def __init__(self, level: int = logging.WARNING) -> None:
        self._level = level
        self._handler: logging.Handler | None = None

    def _install(self, handler: logging.Handler) -> None:
        handler.setLevel(self._level)
        logger = logging.getLogger("vmsbridge.client")
        logger.addHandler(handler)
        logger.setLevel(self._level)
        logger.propagate = False
        self._handler = handler

    def __enter__(self) -> _Reporter:
        if self._handler is None:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            self._install(handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handler is not None:
            logging.getLogger("vmsbridge.client").removeHandler(self._handler)
            self._handler = None

    def event(self, event: ProgressEvent) -> None:
        """Receive one progress event."""


class _PlainReporter(_Reporter):
    """Log lines (not a terminal): a line per file started, finished or failed."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._started: dict[str, tuple[float, int, int]] = {}

    def __enter__(self) -> _Reporter:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
        self._install(handler)
        return self

    def event(self, event: ProgressEvent) -> None:
        from vmsbridge.client import format_size

        log = logging.getLogger("vmsbridge.client")
        if event.kind == "start":
            self._started[event.file_id] = (time.monotonic(), event.total, event.done)
        elif event.kind == "done" and event.file_id in self._started:
            t0, total, done = self._started.pop(event.file_id)
            took = max(time.monotonic() - t0, 1e-6)
            log.info(
                "%s: done, %s in %.1f s (%s/s)",
                event.file_id,
                format_size(total),
                took,
                format_size((total - done) / took),
            )
        elif event.kind == "skipped":
            log.info("%s: already uploaded", event.file_id)


class _RichReporter(_Reporter):
    """Progress bars on a terminal: one per file, and a total (bytes, speed, ETA)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.total = self.progress.add_task("[bold]total", total=0)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Reporter:
        from rich.logging import RichHandler

        self._install(RichHandler(console=self.console, show_path=False, show_time=False))
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        super().__exit__(*exc)

    def event(self, event: ProgressEvent) -> None:
        p = self.progress
        task = self.tasks.get(event.file_id)
        if event.kind in ("start", "skipped"):
            if task is None:
                task = p.add_task(event.file_id, total=event.total)
                self.tasks[event.file_id] = task
                tot = p.tasks[self.total].total or 0
                p.update(self.total, total=tot + event.total)
            done = event.total if event.kind == "skipped" else event.done
            p.update(task, completed=done)
            p.advance(self.total, done)
            if event.kind == "skipped":
                p.update(task, description=f"{event.file_id} [dim](already uploaded)")
        elif task is None:
            return  # a file that failed before it started: the SDK logged why
        elif event.kind == "advance":
            p.advance(task, event.advance)
            p.advance(self.total, event.advance)
        elif event.kind == "done":
            p.update(task, description=f"[green]{event.file_id}")
        elif event.kind == "failed":
            p.update(task, description=f"[red]{event.file_id} (failed)")


def _make_reporter(*, rich: bool, plain: bool, quiet: bool) -> _Reporter:
    if rich:
        return _RichReporter()
    if plain:
        return _PlainReporter()
    return _Reporter(logging.ERROR if quiet else logging.WARNING)


__all__ = ["push"]
