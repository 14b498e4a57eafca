"""`/ask`, `/lesson` and `/lessons`: questions about the home repository (or, as
`/ask owner/repo …`, another indexed one), and what people teach Persais (`app/memory/`)."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply


class AskAgent(Agent):
    name = "ask"
    command = "ask"
    description = "a question about Persais's code, answered with path:line references"
    permissions: ClassVar[tuple[str, ...]] = ("memory",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        question = message.text.strip()
        if not question:
            return "Ask about the code, for example: /ask How is a Telegram webhook verified?"
        memory = ctx.capability("memory")
        first, _, rest = question.partition(" ")
        if "/" in first and rest and first in await memory.indexed():  # /ask owner/repo …
            answer = await memory.ask(rest, asked_by=message.user, repository=first)
        else:
            answer = await memory.ask(question, asked_by=message.user)
        return str(answer.text)


class LessonAgent(Agent):
    name = "lesson"
    command = "lesson"
    description = "teach a lesson for future reviews and Mechanic jobs: /lesson [paths] <text>"
    permissions: ClassVar[tuple[str, ...]] = ("memory",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        text = message.text.strip()
        if not text:
            return (
                "What should I remember? Name the paths it is about, for example: "
                "/lesson dynamic/agents/ never call time.sleep in an agent; use asyncio.sleep"
            )
        lesson = await ctx.capability("memory").teach(text, by=message.user)
        if lesson is None:
            return "I know that one already."
        where = ", ".join(lesson.paths) if lesson.paths else "every path"
        return (
            f"Lesson #{lesson.id} noted for {where}. Reviews and Mechanic jobs touching it "
            "will take it into account. /lessons lists them."
        )


class LessonsAgent(Agent):
    name = "lessons"
    command = "lessons"
    description = "the lessons Persais keeps; admins: /lessons retire <id>"
    permissions: ClassVar[tuple[str, ...]] = ("memory",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        memory = ctx.capability("memory")
        words = message.text.split()
        if words and words[0].lower() == "retire":
            number = words[1].lstrip("#") if len(words) == 2 else ""
            if not number.isdigit() or not 0 < int(number) < 2**62:
                return "Which lesson? /lessons retire <id>, for example /lessons retire 3"
            if not message.admin:
                return "Only an admin can retire a lesson."
            if await memory.retire(int(number), by=message.user):
                return f"Lesson #{number} retired: it no longer goes into prompts."
            return f"There is no active lesson #{number}."
        if words:
            return "/lessons lists the lessons; admins retire one with /lessons retire <id>."
        found = await memory.active_lessons()
        if not found:
            return "No lessons yet. Teach one with /lesson <paths> <text>."
        lines = [f"Lessons ({len(found)}):"] + [lesson.line() for lesson in found[-30:]]
        return "\n".join(lines)
