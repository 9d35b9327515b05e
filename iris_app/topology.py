"""The topology as the app's own objects declare it: agents, the topics and tables they use."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.tables.wrappers import WindowWrapper


@dataclass(frozen=True)
class AgentLinks:
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    tables: tuple[str, ...]


def describe(app: faust.App) -> list[AgentLinks]:
    """Each agent with its input topics, and the topics and tables its function refers to."""
    agents = []
    for agent in app.agents.values():
        code, names = agent.fun.__code__, agent.fun.__globals__
        used = [names[name] for name in code.co_names if name in names]
        agents.append(
            AgentLinks(
                name=agent.fun.__name__,
                reads=tuple(agent.channel.topics),
                writes=tuple(t.get_topic_name() for t in used if isinstance(t, faust.TopicT)),
                tables=tuple(
                    (t.table if isinstance(t, WindowWrapper) else t).name
                    for t in used
                    if isinstance(t, (WindowWrapper, faust.tables.Collection))
                ),
            )
        )
    return agents


def as_text(agents: list[AgentLinks]) -> str:
    lines = []
    for agent in agents:
        lines.append(f"agent {agent.name}")
        lines += [f"  reads  topic {topic}" for topic in agent.reads]
        lines += [f"  writes topic {topic}" for topic in agent.writes]
        lines += [f"  table  {table} (changelogged)" for table in agent.tables]
    return "\n".join(lines)


def as_mermaid(agents: list[AgentLinks]) -> str:
    def node(kind: str, name: str) -> str:
        ident = f"{kind}_{name}".replace("-", "_")
        shape = {"topic": f"[/{name}/]", "agent": f"(({name}))", "table": f"[({name})]"}[kind]
        return ident + shape

    lines = ["flowchart LR"]
    for agent in agents:
        me = node("agent", agent.name)
        lines += [f"  {node('topic', topic)} --> {me}" for topic in agent.reads]
        lines += [f"  {me} --> {node('topic', topic)}" for topic in agent.writes]
        lines += [f"  {me} <--> {node('table', table)}" for table in agent.tables]
    return "\n".join(lines)
