"""`faust -A iris_app topology` describes the pipeline from the app's own objects."""

from __future__ import annotations

import subprocess

from support.checkout import FAUST, REPO


def test_the_topology_command_prints_every_link_as_text_and_mermaid():
    run = subprocess.run(
        [FAUST, "-A", "iris_app", "topology"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    text, mermaid = run.stdout.split("```mermaid\n")
    assert "agent classify\n  reads  topic iris\n" in text
    for topic in ["iris-dlq", "iris-classified", "iris-window-deltas", "iris-accuracy-deltas"]:
        assert f"  writes topic {topic}\n" in text
    assert "agent count\n  reads  topic iris-window-deltas\n" in text
    assert "  table  window-counts (changelogged)" in text
    assert mermaid.startswith("flowchart LR\n")
    assert "topic_iris[/iris/] --> agent_classify((classify))" in mermaid
    assert "agent_count((count)) <--> table_window_counts[(window-counts)]" in mermaid
    assert (
        "agent_tally_accuracy((tally_accuracy)) --> "
        "topic_iris_classified_window_accuracy[/iris-classified-window-accuracy/]" in mermaid
    )
