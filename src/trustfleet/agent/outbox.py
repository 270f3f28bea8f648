"""The bounded offline queue of messages the agent has to deliver (QoS 1, at least once).

The queue lives outside the MQTT client, so it survives reconnects and the client rebuild after
a re-enrollment. A message leaves it only when the broker's PUBACK arrives. When it is full,
the oldest message is dropped and counted.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["Message", "Outbox"]


@dataclass(frozen=True)
class Message:
    """One message to publish: topic, UTF-8 JSON payload and its ``seq``."""

    seq: int
    topic: str
    payload: bytes


@dataclass
class _Entry:
    message: Message
    sent_by: int | None = None  # the link generation that has it in flight, if any


class Outbox:
    """A thread-safe FIFO with a bound; delivery is confirmed per message.

    Args:
        max_messages: The bound; when full, ``put`` drops the oldest message.
    """

    def __init__(self, *, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be positive")
        self._entries: deque[_Entry] = deque()
        self._max = max_messages
        self._cond = threading.Condition()
        self.dropped = 0
        self.delivered = 0
        self.rejected = 0

    def put(self, message: Message) -> None:
        """Append a message; when the queue is full, drop (and count) the oldest."""
        with self._cond:
            while len(self._entries) >= self._max:
                self._entries.popleft()
                self.dropped += 1
            self._entries.append(_Entry(message))
            self._cond.notify_all()

    def take(self, *, generation: int, limit: int) -> list[Message]:
        """Mark up to ``limit - in flight`` unsent messages as sent by ``generation``.

        Messages sent by an older generation (a client that is gone) count as unsent.
        """
        with self._cond:
            in_flight = sum(1 for e in self._entries if e.sent_by == generation)
            picked: list[Message] = []
            for entry in self._entries:
                if in_flight + len(picked) >= limit:
                    break
                if entry.sent_by != generation:
                    entry.sent_by = generation
                    picked.append(entry.message)
            return picked

    def settle(self, message: Message, *, generation: int, delivered: bool | None) -> None:
        """Record the fate of a message sent by ``generation``.

        Args:
            message: The message.
            generation: The link generation that sent it.
            delivered: True (PUBACK success): remove. False (the broker refused it for good):
                remove and count as rejected. None (no PUBACK: disconnect, timeout): send again.
        """
        with self._cond:
            for entry in self._entries:
                if entry.message is message:
                    if delivered is None:
                        if entry.sent_by == generation:
                            entry.sent_by = None
                    else:
                        self._entries.remove(entry)
                        if delivered:
                            self.delivered += 1
                        else:
                            self.rejected += 1
                    break
            self._cond.notify_all()

    def pending(self, seqs: set[int]) -> set[int]:
        """Which of ``seqs`` are still queued."""
        with self._cond:
            return {e.message.seq for e in self._entries if e.message.seq in seqs}

    def wait_change(self, timeout_s: float) -> None:
        """Block until the queue changes or ``timeout_s`` passes."""
        with self._cond:
            self._cond.wait(timeout_s)

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)
