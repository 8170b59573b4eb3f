"""The one exception the expression language raises."""

from __future__ import annotations


class ExpressionError(ValueError):
    """An expression that cannot be used; ``messages`` says, one problem each, what to fix."""

    def __init__(self, messages: list[str] | str, text: str | None = None):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.text = text
        super().__init__("\n".join(self.messages))
