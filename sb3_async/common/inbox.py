"""The main process's reading of the workers' message queue, in a thread of its own."""

import queue
import threading
from typing import Any

__all__ = ["Inbox"]


# Reads failing one after the other before the queue is taken for broken.
_MAX_FAILURES_IN_A_ROW = 100


class _ReadError:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Inbox:
    """
    Moves the messages of a ``multiprocessing`` queue into a local one, in a daemon thread.

    A worker killed half-way through writing a message (the OOM killer, while the pipe was full)
    leaves the rest of the message missing, and a read of it waits for ever, also through Ctrl-C.
    Only this thread then waits: the main thread goes on, sees the worker's death and reports it.

    :param source: the queue the workers write to
    """

    def __init__(self, source: Any) -> None:
        self._source = source
        self._messages: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="sb3_async-inbox", daemon=True)

    def start(self) -> None:
        """Start reading (once the workers are forked: a thread forked into them would be of no use)."""
        if self._thread.ident is None:
            self._thread.start()

    def _read(self) -> None:
        failures_in_a_row = 0
        while True:
            try:
                self._messages.put(self._source.get(timeout=0.05))
                failures_in_a_row = 0
            except queue.Empty:
                if self._stopping.is_set():
                    return
            except Exception as error:
                # One message that cannot be rebuilt here (even an OSError: a tensor shared by a file
                # descriptor its sender closed): the next ones are whole. Only a queue that fails
                # every read is given up.
                self._messages.put(_ReadError(error))
                failures_in_a_row += 1
                if failures_in_a_row >= _MAX_FAILURES_IN_A_ROW:
                    return

    def get(self, timeout: float) -> Any:
        """
        The next message, waiting up to ``timeout`` seconds (0: not at all); ``queue.Empty`` if none
        came; the exception raised reading a message in its place.
        """
        message = self._messages.get(timeout=timeout) if timeout > 0 else self._messages.get_nowait()
        if isinstance(message, _ReadError):
            raise message.error
        return message

    def stop(self, timeout: float = 2.0) -> bool:
        """
        Read what is left in the queue and stop. Returns False if the thread is stuck in a message
        that will never be complete: it is left waiting (a daemon), and the queue must not be closed.
        """
        self.start()
        self._stopping.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()
