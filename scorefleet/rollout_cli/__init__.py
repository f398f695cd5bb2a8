"""The SRE's rollout controls: `kubectl scorefleet ...`, also `scorefleet rollout ...`.

    get [NAME]            pipelines, or one pipeline: tracks, weights, QPS, p99, shadow
                          agreement, analysis checks (measured beside threshold), conditions
    watch NAME            the same, live
    promote NAME [--full] next step now (or, with --full, skip every remaining step)
    pause / resume NAME   hold the rollout where it is / let it continue
    abort NAME            traffic back to the stable track, candidate scaled to zero
    retry NAME            run a Failed or Aborted candidate again, from the first step

Actions are written as the annotation `scorefleet.io/rollout-action: "<action> <request id>"`
on the pipeline, exactly what a Git-only team can commit instead; the operator acts on each
distinct value once. Reads come from status only; Kubernetes is reached through
scorefleet.operator.kube, like the operator does.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from scorefleet.operator.decide.rollout import ACTION_ANNOTATION, Verb
from scorefleet.operator.kube import Kube, KubeError, current_namespace
from scorefleet.rollout_cli.view import pipeline_view, pipelines_table

Obj = dict[str, Any]

# Which rollout phases each action applies to (the operator announces and ignores the rest;
# refusing here saves a round trip and says why at once).
APPLIES: dict[Verb, tuple[str, ...]] = {
    "promote": ("Shadow", "Canary"),
    "promote-full": ("Shadow", "Canary"),
    "pause": ("Shadow", "Canary"),
    "resume": ("Shadow", "Canary"),
    "abort": ("Shadow", "Canary", "Promoting"),
    "retry": ("Failed", "Aborted"),
}


class Context:
    def __init__(self, namespace: str | None, kubeconfig: str | None) -> None:
        if kubeconfig:
            os.environ["KUBECONFIG"] = kubeconfig
        self._namespace = namespace
        self._kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube()
        return self._kube

    @property
    def namespace(self) -> str:
        if self._namespace is None:
            self._namespace = current_namespace()
        return self._namespace

    def pipeline(self, name: str) -> Obj:
        body = self.kube.get_pipeline(self.namespace, name)
        if body is None:
            raise click.ClickException(f"scoringpipeline {self.namespace}/{name} not found")
        return body


def _prog_name() -> str:
    return ("kubectl scorefleet" if os.path.basename(sys.argv[0]).startswith("kubectl-")
            else "scorefleet rollout")


@click.group(help=__doc__.split("\n\n")[0] if __doc__ else None)
@click.option("-n", "--namespace", default=None,
              help="Namespace (default: the kubeconfig context's).")
@click.option("--kubeconfig", default=None, envvar="KUBECONFIG",
              help="Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).")
@click.pass_context
def cli(ctx: click.Context, namespace: str | None, kubeconfig: str | None) -> None:
    ctx.obj = Context(namespace, kubeconfig)


@cli.command()
@click.argument("name", required=False)
@click.pass_obj
def get(c: Context, name: str | None) -> None:
    """One pipeline's rollout in detail, or every pipeline in the namespace."""
    console = Console()
    try:
        if name is None:
            console.print(pipelines_table(c.kube.list_pipelines_in(c.namespace)))
            return
        body = c.pipeline(name)
        console.print(pipeline_view(body, c.kube.list_events(c.namespace, name)))
    except KubeError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.argument("name")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--count", default=0, help="Stop after this many refreshes (0: until Ctrl-C).")
@click.pass_obj
def watch(c: Context, name: str, interval: float, count: int) -> None:
    """The pipeline's rollout, refreshed live from its status."""
    refreshes = 0
    with Live(pipeline_view(c.pipeline(name)), auto_refresh=False) as live:
        try:
            while True:
                live.update(pipeline_view(c.pipeline(name),
                                          c.kube.list_events(c.namespace, name)), refresh=True)
                refreshes += 1
                if count and refreshes >= count:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def request_action(c: Context, name: str, verb: Verb, force: bool) -> str:
    """Write the action annotation; returns its value."""
    body = c.pipeline(name)
    rollout = (body.get("status") or {}).get("rollout") or {}
    phase = rollout.get("phase")
    if not force and phase not in APPLIES[verb]:
        where = f"the rollout is {phase}" if phase else "no rollout is on record"
        raise click.ClickException(
            f"{verb} does not apply to {c.namespace}/{name}: {where} (it applies to "
            f"{' or '.join(APPLIES[verb])}); --force writes it anyway")
    if not force and verb == "resume" and not rollout.get("paused"):
        raise click.ClickException(f"{c.namespace}/{name} is not paused")
    value = f"{verb} {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
    try:
        c.kube.annotate_pipeline(c.namespace, name, {ACTION_ANNOTATION: value})
    except KubeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{verb} requested for {c.namespace}/{name} ({ACTION_ANNOTATION}={value!r}); "
               "the operator acts on it at its next reconcile")
    return value


def _action(verb: Verb, doc: str) -> None:
    @cli.command(name=verb, help=doc)
    @click.argument("name")
    @click.option("--force", is_flag=True, help="Write the action even if status says it "
                                                "does not apply.")
    @click.pass_obj
    def command(c: Context, name: str, force: bool) -> None:
        request_action(c, name, verb, force)


@cli.command()
@click.argument("name")
@click.option("--full", is_flag=True, help="Skip every remaining step and analysis.")
@click.option("--force", is_flag=True, help="Write the action even if status says it does "
                                            "not apply.")
@click.pass_obj
def promote(c: Context, name: str, full: bool, force: bool) -> None:
    """Leave the current step (or the shadow phase) now; --full: promote at once."""
    request_action(c, name, "promote-full" if full else "promote", force)


_action("pause", "Hold the rollout at its current step (analysis keeps judging).")
_action("resume", "Continue a paused rollout.")
_action("abort", "Traffic back to the stable track now; the candidate is scaled to zero.")
_action("retry", "Run a Failed or Aborted candidate again from the first step.")


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name=_prog_name(), standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
