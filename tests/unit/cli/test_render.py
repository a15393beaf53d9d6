"""Plain output for logs: aligned text, one event per line, no escape codes; rich for terminals."""

from __future__ import annotations

import io
import re

from rich.console import Console

from georollout_cli.render import PlainRenderer, RichRenderer, renderer_for
from georollout_cli.waiting import WaitOutcome, WaitResult
from tests.unit.cli.fake_api import digest_of, document, region

ANSI = re.compile(r"\x1b\[|\x1b\]|\r")


def rollout(**extra: object) -> dict[str, object]:
    return document(
        digest_of("3"),
        "deploying",
        [
            region(
                "eastus",
                "live",
                replicated_at="2026-11-24T07:10:00.400000Z",
                deploy_started_at="2026-11-24T07:10:01Z",
                live_at="2026-11-24T07:11:05Z",
                deploy_step="done",
            ),
            region(
                "westus",
                "awaiting_replication",
                probe_attempts=3,
                waiting_for="the image in the replica",
                last_error="replica answered 404\nmanifest unknown",
            ),
        ],
        tags=["v2"],
        pending_tags=["stable"],
        updated_at="2026-11-24T07:11:05.999Z",
        **extra,
    )


def plain() -> tuple[PlainRenderer, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return PlainRenderer(out, err), out, err


def test_a_log_gets_the_plain_renderer_and_a_terminal_the_rich_one() -> None:
    assert isinstance(renderer_for(io.StringIO(), io.StringIO()), PlainRenderer)
    assert isinstance(renderer_for(io.StringIO(), io.StringIO(), terminal=True), RichRenderer)


def test_the_list_is_an_aligned_table_of_short_ids_and_digests() -> None:
    renderer, out, _ = plain()
    older = document(digest_of("f"), "live", [region("eastus", "live")], tags=["v1"])
    renderer.rollout_list([rollout(), older])
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "REPOSITORY", "DIGEST", "TAGS", "STATE", "UPDATED"]
    assert lines[1].split("  ")[0] == "127.0.0.1_5001~models~llm~sha256-333333333333"
    assert "sha256:333333333333 " in lines[1] and "v2, stable (pending)" in lines[1]
    assert lines[1].rstrip().endswith("deploying  2026-11-24 07:11:05Z")
    # Aligned: every row's STATE column starts where the header's does.
    column = lines[0].index("STATE")
    assert lines[1][column:].startswith("deploying") and lines[2][column:].startswith("live")
    assert not ANSI.search(out.getvalue())


def test_an_empty_list_says_so() -> None:
    renderer, out, _ = plain()
    renderer.rollout_list([])
    assert out.getvalue() == "no rollouts\n"


def test_the_detail_shows_regions_with_timings_since_creation() -> None:
    renderer, out, _ = plain()
    renderer.rollout_detail(rollout(superseded_by="newer-id"))
    text = out.getvalue()
    assert "superseded by  newer-id" in text
    [eastus] = [line for line in text.splitlines() if line.startswith("eastus")]
    assert eastus.split() == [
        "eastus",
        "(primary)",
        "-",  # no wave: a document from before progressive rollouts
        "live",
        "done",
        "-",
        "+400ms",
        "+1s",
        "+1m05s",
        "1",
        "-",
    ]
    [westus] = [line for line in text.splitlines() if line.startswith("westus")]
    assert (
        "waiting for: the image in the replica; error: replica answered 404 manifest unknown"
        in westus
    )
    assert "builds:" not in text
    assert not ANSI.search(text)


def test_a_waiting_region_shows_when_its_replica_is_expected() -> None:
    renderer, out, _ = plain()
    waiting = region("westus", "awaiting_replication", eta="2026-11-24T07:11:30.250000Z")
    renderer.rollout_detail(document(digest_of("a"), "replicating", [waiting]))
    [row] = [line for line in out.getvalue().splitlines() if line.startswith("westus")]
    assert row.endswith("replica expected 2026-11-24 07:11:30Z")


def test_the_detail_lists_the_builds_when_the_document_has_them() -> None:
    renderer, out, _ = plain()
    build = {
        "system": "github-actions",
        "id": "7421",
        "url": "https://ci/runs/7421",
        "commit": "9fceb02",
        "source": None,
        "received_at": "2026-11-24T07:10:00Z",
    }
    renderer.rollout_detail(rollout(builds=[build]))
    lines = out.getvalue().splitlines()
    at = lines.index("builds:")
    assert lines[at + 1].split() == ["SYSTEM", "ID", "COMMIT", "URL", "SOURCE", "RECEIVED"]
    assert lines[at + 2].split() == [
        "github-actions",
        "7421",
        "9fceb02",
        "https://ci/runs/7421",
        "-",
        "2026-11-24",
        "07:10:00Z",
    ]


def test_the_detail_shows_operator_actions_holds_attempts_and_gates() -> None:
    renderer, out, _ = plain()
    held = region("northeurope", "held", held=True, held_in="replicated", attempt=2)
    document_ = rollout(
        history=[
            {
                "at": "2026-11-24T07:12:00Z",
                "action": "hold",
                "actor": "alice",
                "actor_verified": False,
                "reason": "latency\nalarm",
                "regions": ["northeurope"],
                "outcome": "accepted",
                "message": None,
            },
            {
                "at": "2026-11-24T07:13:00Z",
                "action": "approve",
                "actor": "bob@contoso.com",
                "actor_verified": True,
                "reason": None,
                "regions": [],
                "outcome": "refused",
                "message": "no approval gate is waiting",
            },
        ],
        approval="before_secondaries",
        approvals=[{"wave": 1, "opened_at": "2026-11-24T07:11:05Z", "approved_at": None}],
    )
    regions = document_["regions"]
    assert isinstance(regions, list)
    document_["regions"] = [*regions, held]
    renderer.rollout_detail(document_)
    text = out.getvalue()
    lines = text.splitlines()
    assert "approval  before_secondaries (wave 1 waiting since 2026-11-24 07:11:05Z)" in text
    assert "held by an operator (in replicated); attempt 2" in text
    at = lines.index("operator actions:")
    assert lines[at + 1].split() == ["AT", "ACTION", "ACTOR", "REGIONS", "OUTCOME", "REASON"]
    assert "hold" in lines[at + 2] and "alice (unverified)" in lines[at + 2]
    assert lines[at + 2].rstrip().endswith("latency alarm")
    assert "bob@contoso.com " in lines[at + 3] and "(unverified)" not in lines[at + 3]
    assert "refused: no approval gate is waiting" in lines[at + 3]


def test_progress_is_one_stamped_event_per_line() -> None:
    ticks = iter([100.0, 100.0, 112.4, 130.0])
    out, err = io.StringIO(), io.StringIO()
    renderer = PlainRenderer(out, err, monotonic=lambda: next(ticks))
    with renderer.waiting() as sink:
        sink.note("no rollout recorded yet")
        sink.changed(rollout(), ["rollout deploying", "eastus: live"])
    assert out.getvalue().splitlines() == [
        "[+0ms] no rollout recorded yet",
        "[+12s] rollout deploying",
        "[+12s] eastus: live",
    ]


def test_live_goes_to_stdout_and_a_failure_or_timeout_to_stderr() -> None:
    renderer, out, err = plain()
    live = document(digest_of("a"), "live", [region("eastus", "live")])
    renderer.wait_result(WaitResult(WaitOutcome.LIVE, "live in every region", live))
    failed = document(digest_of("a"), "failed", [region("eastus", "failed")])
    renderer.wait_result(WaitResult(WaitOutcome.ENDED, "eastus (failed): boom", failed))
    renderer.wait_result(WaitResult(WaitOutcome.TIMED_OUT, "x: never recorded after 5s", None))
    assert out.getvalue() == f"live: {live['id']}\n"
    assert err.getvalue().splitlines() == [
        "failed: eastus (failed): boom",
        "timed out: x: never recorded after 5s",
    ]


def test_rich_keeps_region_names_whole_and_colours_the_state_on_a_narrow_terminal() -> None:
    out = io.StringIO()
    renderer = RichRenderer(out, io.StringIO())
    # An 80-column colour terminal (the renderer's own settings otherwise).
    renderer.console = Console(
        file=out, width=80, force_terminal=True, color_system="standard", markup=False
    )
    long_wait = "endpoint models-llm-0123456789abcdef is updating after a change of traffic"
    regions = [
        region("eastus", "live", wave=0),
        region("northeurope", "live", wave=1, waiting_for=long_wait),
    ]
    renderer.rollout_detail(document(digest_of("a"), "live", regions))
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    rows = [line.split() for line in plain.splitlines()]
    assert ["northeurope", "1", "live"] in [row[:3] for row in rows], plain
    # The region's STATE cell is the coloured one (green for live), not its WAVE.
    [row] = [line for line in out.getvalue().splitlines() if "northeurope" in line]
    assert "\x1b[32mlive" in row, row


def test_rich_shows_the_same_rows_and_keeps_brackets_in_error_texts() -> None:
    out = io.StringIO()
    renderer = RichRenderer(out, io.StringIO())
    renderer.rollout_detail(rollout(step_error="[bold]not markup[/bold]"))
    text = out.getvalue()
    assert "[bold]not markup[/bold]" in text
    assert "westus" in text and "+1m05s" in text


def test_the_detail_shows_waves_traffic_soak_and_the_rollback_reason() -> None:
    renderer, out, _ = plain()
    progressive = document(
        digest_of("4"),
        "rolled_back",
        [
            region("eastus", "live", wave=0, traffic_percent=100, deploy_step="keeping_previous"),
            region(
                "westus",
                "soaking",
                wave=1,
                traffic_percent=100,
                soaking=True,
                soak_until="2026-11-24T07:15:30Z",
                waiting_for="soak",
            ),
            region(
                "westeurope", "deploying", wave=2, traffic_percent=10, deploy_step="holding_step"
            ),
        ],
        rollback_reason="verification failed 2 time(s) in westus during its soak",
    )
    renderer.rollout_detail(progressive)
    text = out.getvalue()
    assert "rollback reason  verification failed 2 time(s) in westus during its soak" in text
    [westus] = [line for line in text.splitlines() if line.startswith("westus")]
    assert westus.split()[:3] == ["westus", "1", "soaking"]
    assert "soaking until 2026-11-24 07:15:30Z" in westus
    [westeurope] = [line for line in text.splitlines() if line.startswith("westeurope")]
    assert westeurope.split()[:5] == ["westeurope", "2", "deploying", "holding_step", "10%"]
