"""What `expwatch demo` shows: the experiments with their verdicts, the event feed, the
alerts sent to the terminal and each source's health, as a live terminal view (rich) or as
plain lines when the output is not a terminal.

`DemoState` holds what is shown, fed by the demo's tasks (events from the store's log,
alerts from the dispatcher, source statuses from the supervisor); `render_view` draws it.
Nothing here talks to the network or the database but `load_rows`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from alerts import Level, render
from store import Event, Experiment, HealthStatus, MetricRole, Snapshot, Store, Verdict
from watcher import SourceStatus

FEED_SIZE = 100
"""Events and alerts kept for the view (it shows the latest that fit)."""

NO_WINNER_OUTCOMES = frozenset({"inconclusive", "dnf", "abandoned"})
"""Decisions that name no variation worth showing (GrowthBook reports one all the same)."""
NOTIFY_STYLE = {"failure": "bold red", "warning": "yellow", "success": "green"}
"""Feed and alert styles by an alert's notify type: its level, good news in green."""
VERDICT_STYLE = {Verdict.WON: "bold green", Verdict.LOST: "bold red"}


@dataclass(frozen=True, kw_only=True)
class DemoEndpoints:
    """Where everything of the demo lives."""

    growthbook_url: str
    statsig_url: str
    mcp_url: str
    database: str
    refresh_seconds: float
    story_seconds: Callable[[], float]
    """How long the simulated platforms' stories have been running."""

    def refresh(self) -> int:
        """The simulated platforms' current refresh index."""
        return int(self.story_seconds() // self.refresh_seconds)


@dataclass(frozen=True, kw_only=True)
class MetricLine:
    """One key metric (a goal or a guardrail) of an experiment's treatment."""

    name: str
    role: MetricRole
    ours: Verdict | None
    """expwatch's anytime-valid verdict; None while there is too little data."""
    platform: Verdict
    lift: float | None


@dataclass(frozen=True, kw_only=True)
class ExperimentRow:
    """One experiment as the view shows it."""

    platform: str
    experiment_id: str
    name: str
    status: str
    decision: str | None = None
    metrics: tuple[MetricLine, ...] = ()
    srm: bool | None = None
    """Our sequential SRM test says mismatch (None: no results yet)."""
    srm_p_value: float | None = None
    users: float | None = None
    checks: str | None = None
    """The platform's worst health check when it is not passing (Statsig), else None."""


@dataclass(frozen=True, kw_only=True)
class AlertLine:
    """One alert the dispatcher delivered to the terminal."""

    at: datetime
    level: Level
    title: str
    notify_type: str = "info"
    """Apprise's notify type of the alert ("failure", "warning", "success", "info")."""


@dataclass
class DemoState:
    """Everything the view shows; the demo's tasks keep it current."""

    endpoints: DemoEndpoints
    platforms: dict[str, str]
    """Platform name ("GrowthBook", "Statsig") by source name."""
    rows: list[ExperimentRow] = field(default_factory=list)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    feed: deque[FeedLine] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    alerts: deque[AlertLine] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    sources: list[SourceStatus] = field(default_factory=list)

    def add_event(self, event: Event) -> FeedLine:
        """Put `event` in the feed; its line (worded once, not at every frame)."""
        line = FeedLine.of(event)
        self.events.append(event)
        self.feed.append(line)
        return line


async def load_rows(store: Store, platforms: dict[str, str]) -> list[ExperimentRow]:
    """Every recorded experiment with its latest results, as the view shows it."""
    rows = []
    for experiment in await store.experiments():
        _, stored = await store.current(experiment.experiment_id)
        row = ExperimentRow(
            platform=platforms.get(experiment.source, experiment.source),
            experiment_id=experiment.experiment_id,
            name=experiment.name,
            status=experiment.status,
            decision=_decision(experiment),
        )
        if stored is not None:
            row = _with_results(row, stored.snapshot)
        rows.append(row)
    rows.sort(key=lambda r: (r.platform, r.name))
    return rows


def _decision(experiment: Experiment) -> str | None:
    decision = experiment.decision
    if decision is None:
        return None
    named = next(
        (v.name for v in experiment.variations if v.variation_id == decision.variation_id), None
    )
    if named is None or decision.outcome in NO_WINNER_OUTCOMES:
        return decision.outcome
    return f"{decision.outcome}: {named}"


def _with_results(row: ExperimentRow, snapshot: Snapshot) -> ExperimentRow:
    """`row` with the key metrics (goals and guardrails; the last variation against the
    baseline), SRM, users and failing checks of `snapshot`."""
    metrics = []
    for metric in snapshot.metrics:
        if metric.role is MetricRole.SECONDARY or len(metric.variations) < 2:
            continue
        treatment = metric.variations[-1]
        metrics.append(
            MetricLine(
                name=metric.metric_name or metric.metric_id,
                role=metric.role,
                ours=treatment.ours.verdict if treatment.ours else None,
                platform=treatment.platform_verdict,
                lift=treatment.relative_change,
            )
        )
    severity = {HealthStatus.WARNING: 1, HealthStatus.FAILED: 2}
    unhealthy = [c.status for c in snapshot.health_checks if c.status in severity]
    users = snapshot.total_users or sum(
        v.users for v in (snapshot.metrics[0].variations if snapshot.metrics else ())
    )
    return replace(
        row,
        metrics=tuple(metrics),
        srm=snapshot.our_srm.is_mismatch if snapshot.our_srm else None,
        srm_p_value=snapshot.our_srm.p_value if snapshot.our_srm else None,
        users=users or None,
        checks=max(unhealthy, key=severity.__getitem__).value if unhealthy else None,
    )


# -- text pieces shared by the live view and the plain lines ----------------------------------


@dataclass(frozen=True, kw_only=True)
class FeedLine:
    """One event as the feed shows it: `#12 10:31:07 srm_detected  <what happened>` (in the
    words of its alert's title) and the style of its urgency."""

    text: str
    style: str

    @classmethod
    def of(cls, event: Event) -> FeedLine:
        message = render(event)
        when = clock_time(event.occurred_at)
        return cls(
            text=f"#{event.id or 0:<3} {when} {event.kind.value:<24} {message.title}",
            style=NOTIFY_STYLE.get(message.notify_type, ""),
        )


def clock_time(moment: datetime) -> str:
    """HH:MM:SS in local time."""
    return moment.astimezone().strftime("%H:%M:%S")


def seconds_ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, (now - moment).total_seconds())
    return f"{seconds:.1f} s ago" if seconds < 60 else f"{seconds / 60:.0f} min ago"


def alert_line(alert: AlertLine) -> str:
    return f"{clock_time(alert.at)} [{alert.level.value}] {alert.title}"


def summary_lines(rows: list[ExperimentRow]) -> list[str]:
    """The experiments as plain text: one line each, then one per key metric."""
    lines = []
    for row in rows:
        status = f"{row.status} ({row.decision})" if row.decision else row.status
        srm = "no results yet"
        if row.srm is not None:
            srm = f"SRM MISMATCH (p={row.srm_p_value:.1g})" if row.srm else "SRM ok"
        if row.checks:
            srm += f", a health check {row.checks}"
        users = f"{row.users:,.0f} users, " if row.users else ""
        lines.append(f"  {row.platform:<10} {row.experiment_id:<26} {status}; {users}{srm}")
        for m in row.metrics:
            name = m.name + (" (guardrail)" if m.role is MetricRole.GUARDRAIL else "")
            ours = "too early" if m.ours is None else m.ours.value
            lift = "" if m.lift is None else f"{m.lift:+.1%}"
            lines.append(f"      {name:<32} ours {ours:<13} platform {m.platform.value:<13} {lift}")
    return lines


# -- the live view ---------------------------------------------------------------------------


COMPACT_BELOW = 150
"""Terminals narrower than this get the experiments table in short words."""
SHORT = {
    "inconclusive": "incon.",
    "too early": "early",
    "GrowthBook": "GB",
    "decision_made": "decided",
    " (guardrail)": " (g)",
    "MISMATCH": "SRM!",
}
"""The short words of the compact table (`COMPACT_BELOW`)."""


def _word(word: str, *, compact: bool) -> str:
    return SHORT.get(word, word) if compact else word


def _verdict(verdict: Verdict | None, role: MetricRole, *, compact: bool) -> Text:
    if verdict is None:
        return Text(_word("too early", compact=compact), style="dim")
    word = "regressed" if role is MetricRole.GUARDRAIL and verdict is Verdict.LOST else verdict
    return Text(_word(str(word), compact=compact), style=VERDICT_STYLE.get(verdict, "dim"))


def _lines(*parts: Text) -> Text:
    return Text("\n").join(parts) if parts else Text("—", style="dim")


def experiments_table(rows: list[ExperimentRow], *, compact: bool = False) -> Table:
    """One row per experiment, one line per key metric; `compact` in short words (for
    terminals narrower than `COMPACT_BELOW`)."""
    table = Table(
        title="Experiments",
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        expand=True,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("" if compact else "Platform", no_wrap=True)
    table.add_column(
        "Experiment", no_wrap=True, overflow="ellipsis", max_width=20 if compact else None
    )
    table.add_column("Status", no_wrap=True)
    table.add_column("Key metric", no_wrap=True, overflow="ellipsis")
    table.add_column("Ours", no_wrap=True)
    table.add_column("Theirs" if compact else "Platform's", no_wrap=True)
    table.add_column("Lift", justify="right", no_wrap=True)
    table.add_column("SRM", no_wrap=True)
    table.add_column("Users", justify="right", no_wrap=True)
    if not rows:
        table.add_row("", Text("waiting for the first poll…", style="dim"))
    for row in rows:
        status = Text(
            _word(row.status, compact=compact),
            style="green" if row.status in ("running", "active") else "",
        )
        if row.decision:
            decision = row.decision.partition(":")[0] if compact else row.decision
            status.append(f"\n{decision}", style="cyan")
        role = _word(" (guardrail)", compact=compact)
        metric_names = [
            Text(m.name + (role if m.role is MetricRole.GUARDRAIL else "")) for m in row.metrics
        ]
        if row.srm is None:
            srm = Text("—", style="dim")
        elif row.srm:
            srm = Text(
                f"{_word('MISMATCH', compact=compact)}\np={row.srm_p_value:.1g}", style="bold red"
            )
        else:
            srm = Text("ok", style="green")
        if row.checks:
            srm.append(f"\ncheck {row.checks}", style="red" if row.checks == "failed" else "yellow")
        table.add_row(
            _word(row.platform, compact=compact),
            Text.assemble(row.name, "\n", (row.experiment_id, "dim")),
            status,
            _lines(*metric_names),
            _lines(*(_verdict(m.ours, m.role, compact=compact) for m in row.metrics)),
            _lines(*(_verdict(m.platform, m.role, compact=compact) for m in row.metrics)),
            _lines(*(Text("—" if m.lift is None else f"{m.lift:+.1%}") for m in row.metrics)),
            srm,
            f"{row.users:,.0f}" if row.users else Text("—", style="dim"),
        )
    return table


def sources_table(state: DemoState, now: datetime) -> Table:
    table = Table(
        title="Sources",
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("Source", "Platform", "Breaker", "Last poll", "Requests", "Errors"):
        table.add_column(
            name, no_wrap=name != "Errors", justify="right" if name == "Requests" else "left"
        )
    for status in state.sources:
        breaker = status.breaker.state.value
        failing = [f"{k or 'listing'}: {v}" for k, v in status.failing.items()]
        if status.database_error:
            failing.append(f"database: {status.database_error}")
        table.add_row(
            status.name,
            state.platforms.get(status.name, ""),
            Text(breaker, style="green" if breaker == "closed" else "bold red"),
            seconds_ago(status.last_cycle_at, now),
            str(status.requests),
            Text("; ".join(failing), style="red") if failing else Text("none", style="green"),
        )
    return table


def header(state: DemoState, now: datetime) -> Panel:
    e = state.endpoints
    elapsed = max(0, int(e.story_seconds()))
    text = Text.assemble(
        ("MCP       ", "bold"),
        (e.mcp_url, "bold cyan"),
        ("   claude mcp add --transport http expwatch-demo ", "dim"),
        (e.mcp_url, "dim"),
        "\n",
        ("database  ", "bold"),
        e.database,
        "\n",
        ("simulated ", "bold"),
        f"GrowthBook {e.growthbook_url} · Statsig {e.statsig_url}",
        "\n",
        ("stories   ", "bold"),
        f"{elapsed // 60}:{elapsed % 60:02d} in · refresh {e.refresh()} "
        f"(every {e.refresh_seconds:g} s) · Ctrl-C stops",
    )
    return Panel(text, title="expwatch demo", title_align="left", border_style="cyan")


def _feed(title: str, lines: list[Text], size: int) -> Panel:
    shown = lines[-size:] if size > 0 else []
    body = Text("\n").join(shown) if shown else Text("nothing yet", style="dim")
    return Panel(body, title=title, title_align="left", height=max(size, 1) + 2)


def render_view(
    state: DemoState, *, console: Console, now: datetime | None = None
) -> RenderableType:
    """The whole view for `console`: the header and tables as they are, the event feed and
    the alerts sharing the lines left (the latest that fit; at least three each)."""
    now = now or datetime.now(UTC)
    tables = Group(
        header(state, now),
        experiments_table(state.rows, compact=console.width < COMPACT_BELOW),
        sources_table(state, now),
    )
    used = len(console.render_lines(tables, console.options, pad=False))
    room = max(6, console.size.height - used - 2 * 2 - 1)
    alerts_size = max(3, room * 2 // 5)
    events_size = max(3, room - alerts_size)
    events = [_one_line(line.text, line.style) for line in state.feed]
    alerts = [_one_line(alert_line(a), NOTIFY_STYLE.get(a.notify_type, "")) for a in state.alerts]
    return Group(
        tables,
        _feed("Events (newest last)", events, events_size),
        _feed("Alerts sent to the terminal", alerts, alerts_size),
    )


def _one_line(text: str, style: str) -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")
