"""Programs with their own prompt: a REPL, a bootloader, a router CLI.

``host.open_app(start, prompt)`` gives an ``App``; ``await app.cmd(text)``
sends one line and returns what the program printed before its next prompt.

Where the app runs: on a session of its own, named ``name`` or
``app:<program>`` (made unique), opened with a terminal (``pty=True``) so that
programs which want one (a REPL) behave as they do for a person. The session
is closed when the app is, which ends the program; a ``name`` that is already
open is used as it is and left open (its shell state, such as the cwd, is the
program's), and its next ``run`` waits until the shell reads commands again.

How an answer is cut out of what the program prints:

- The prompt is the user's regex where it ends the output received so far: a
  program prints its prompt and then waits for a line. So prompt-like text
  that more output follows (``print('>>> x')``, ``a >>> b``) is output, never
  a prompt, wherever it is in a line; ``echo -n x`` in U-Boot gives ``x``.
  Terminal escape sequences (colours, bracketed paste) next to the prompt
  belong to it. (A program that prints prompt-like text, stops, then goes
  on, on the same line, would be cut there: no reader can tell it apart.)
- The echo of the line: a terminal may echo it, the program may echo it
  itself (U-Boot does, character by character), or nothing echoes it (a pipe).
  Once the first prompt is seen, otto sends a line holding one space and
  counts the lines that come back before the next prompt: that many leading
  lines of every answer are the echo and are removed, whatever they look like.
- otto never sends an empty line of its own: U-Boot runs its last command
  again on one (``md``, ``mmc write``, ``nand erase``).
- What arrived since the last prompt (a message the program printed by
  itself, a key pressed by someone else on a console) is dropped before each
  command is sent: it is not the answer.
- ``\\r\\n`` (and ``\\r\\r\\n``) is folded to ``\\n`` and one trailing newline is
  stripped, as in command output; everything else is kept as printed.
- A program reached over a serial line or a socket shows no prompt until a key
  is pressed: if nothing at all arrives for a second after ``start`` (at once
  for ``start=None``, unless its prompt is there already), otto presses
  Ctrl-C, and again each second of silence (harmless at a prompt; U-Boot stops
  what it runs). Where Ctrl-C would be a signal to the program just started (a
  terminal), a line holding one space is sent instead.
- An answer longer than the buffer (16 Mi characters) loses its start: the
  answer then begins with a line saying how much was dropped, and a warning
  is logged.
- When ``start`` is a command, the shell prints a marker once it ends, so a
  program that exits is noticed at once (a clear ``ConnectionLost``), and the
  session is a shell again.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from otto.errors import ConnectError, ConnectionLost, ExpectTimeout, tail
from otto.expect import DEFAULT_MAX_CHARS, ExpectMatch
from otto.session.lock import SessionLock

if TYPE_CHECKING:
    from otto.hosts.base import Host
    from otto.session import Session

__all__ = ["App", "OpeningApp", "anchored_prompt", "answer_of", "echo_lines"]

log = logging.getLogger("otto.apps")

NUDGE_AFTER = 1.0
"""Seconds of silence after ``start`` before otto presses a key (Ctrl-C) to see a prompt."""

LATE_ANSWER_WAIT = 5.0
"""Seconds otto waits for the answer to its blank line after a late answer to a key it pressed."""

CLOSE_WAIT = 5.0
"""Seconds to wait, on leaving, for the program to end after ``exit`` was sent."""

_ESC = r"(?:\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_])"
_CTRL_C = "\x03"
_SPACE_LINE = " \n"
"""What otto types to count the echo: a line with nothing to run, never an empty one."""
_EVERYTHING = re.compile(r"(?s).+\Z")
_LEADING_FLAGS = re.compile(r"\A\(\?[aiLmsux]+\)")
_ESCAPES = re.compile(_ESC)
_CRLF = re.compile(r"\r+\n")


def anchored_prompt(prompt: str | re.Pattern[str]) -> re.Pattern[str]:
    """``prompt`` as otto looks for it: where it ends the output received so far.

    Escape sequences (colours, bracketed paste) around it belong to it.
    """
    compiled = re.compile(prompt) if isinstance(prompt, str) else prompt
    # Global flags such as (?i) must lead the whole pattern, not a group.
    body = _LEADING_FLAGS.sub("", compiled.pattern)
    return re.compile(rf"{_ESC}*(?:{body}){_ESC}*\Z", compiled.flags)


def echo_lines(body: str) -> int:
    """How many lines the echo of a blank line took: the leading blank lines of ``body``.

    Blank means nothing but escape sequences and white space.
    """
    count = 0
    for line in _CRLF.sub("\n", body).split("\n")[:-1]:
        if _ESCAPES.sub("", line).strip():
            break
        count += 1
    return count


def answer_of(body: str, echoes: int) -> str:
    """What a program printed for a line, from all it printed before the next prompt.

    Drops the first ``echoes`` lines (the echo), folds ``\\r\\n`` to ``\\n`` and
    strips one trailing line end.
    """
    if "\r" in body:
        body = _CRLF.sub("\n", body)
    for _ in range(echoes):
        cut = body.find("\n")
        if cut < 0:
            break
        body = body[cut + 1 :]
    if body.endswith("\n") or body.endswith("\r"):
        body = body[:-1]
    return body


def _program_name(start: str | None) -> str:
    if not start or not start.split():
        return "app"
    word = start.split()[0].rsplit("/", 1)[-1]
    return f"app:{word}"


class App:
    """A program with its own prompt, running on a session of a host.

    Get one from ``host.open_app(start, prompt)``. Calls are serialized: two
    tasks calling ``cmd`` at once get their answers one after the other, never
    mixed.
    """

    def __init__(
        self,
        host: Host,
        start: str | None,
        prompt: str | re.Pattern[str],
        *,
        name: str | None = None,
        exit: str | None = None,
        timeout: float = 30.0,
        pty: bool = True,
    ) -> None:
        self.host = host
        self.start = start
        self.prompt = re.compile(prompt) if isinstance(prompt, str) else prompt
        self.exit = exit
        self.timeout = timeout
        self.echoes = 0
        """Lines of echo before each answer, counted when the app started."""
        self._name = name
        self._pty = pty
        self._prompt = anchored_prompt(self.prompt)
        self._inner_prompt = re.compile(
            rf"{_ESC}*(?:{_LEADING_FLAGS.sub('', self.prompt.pattern)}){_ESC}*", self.prompt.flags
        )
        self._token = secrets.token_hex(6)
        # The shell prints this once the program ends; its command line reads
        # differently (%s), so an echo of that line never matches.
        self._end = re.compile(rf"__otto_app_{self._token}_end(\d+)\n")
        # A tuple of compiled patterns, the same object on every call: the session
        # then reuses it as it is (nothing compiled or copied per command).
        self._patterns: tuple[re.Pattern[str], ...] = (
            (self._prompt,) if start is None else (self._prompt, self._end)
        )
        self._session: Session | None = None
        self._owned = False
        self._lock = SessionLock()
        self._owed = 0
        self._ended: str | None = None
        self._closed = False
        # Bytes received since the last prompt (which ends what was received, so
        # the buffer is empty right after it): anything there is stale.
        self._heard = 0
        self._unlisten: Callable[[], None] | None = None

    def __repr__(self) -> str:
        where = self._session.where if self._session else self.host.name
        return f"<App {self.start!r} on {where!r}>"

    @property
    def session(self) -> Session:
        """The session the program runs on."""
        if self._session is None:
            raise RuntimeError("the app has not been started")
        return self._session

    @property
    def where(self) -> str:
        """``host/session``, for messages."""
        return self._session.where if self._session else self.host.name

    # --- starting ------------------------------------------------------------

    async def _open(self) -> App:
        session = self.host.sessions.get(self._name) if self._name else None
        if session is None:
            name = self._name or self._free_name()
            # On a console with the prompt already there (a bootloader), there may
            # be no shell at all: take the stream as it is.
            raw = self.start is None and self.host.one_stream
            session = await self.host.open_session(name, pty=self._pty, raw=raw)
            self._owned = True
        self._session = session
        self._unlisten = session.add_listener(self._hear)
        try:
            await self._begin()
        except BaseException:
            await self._release(graceful=False)
            raise
        return self

    def _free_name(self) -> str:
        base = _program_name(self.start)
        taken = self.host.sessions
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        return name

    async def _begin(self) -> None:
        session = self.session
        received = 0

        def count(data: bytes) -> None:
            nonlocal received
            received += len(data)

        remove = session.add_listener(count)
        pressed = 0  # keys otto pressed to see a prompt: each one's answer may still come
        try:
            found = None
            if self.start is not None:
                # One compound command: the program must not read the marker line.
                await session.send(
                    f"{{ {self.start}\n}}; printf '\\n__otto_app_%s_end%d\\n' "
                    f'{self._token} "$?"\n'
                )
            else:
                found = await self._prompt_pending()
                if found is None:
                    await session.send(self._nudge_key())
                    pressed += 1
            deadline = time.monotonic() + self.timeout
            while found is None:
                left = deadline - time.monotonic()
                try:
                    found = await session.expect(self._patterns, min(NUDGE_AFTER, max(left, 0)))
                    break
                except ConnectionLost as exc:  # `start` ended the shell itself
                    raise ConnectError(
                        self.where,
                        f"`{self.start}` ended before its prompt {self.prompt.pattern!r} "
                        f"({exc.reason}); received: {tail(exc.received)!r}",
                    ) from None
                except ExpectTimeout as exc:
                    if left <= NUDGE_AFTER:
                        raise ExpectTimeout(
                            self.where, self.prompt.pattern, self.timeout, exc.received
                        ) from None
                    if received == 0:
                        key = self._nudge_key()
                        log.debug("%s: nothing yet; pressing %r", self.where, key)
                        await session.send(key)
                        pressed += 1
        finally:
            remove()
        if found.index == 1:
            raise ConnectError(
                self.where,
                f"`{self.start}` ended (status {found.match.group(1)}) before its prompt "
                f"{self.prompt.pattern!r}; received: {tail(self._before(found))!r}",
            )
        # Count the echo of a line with nothing to run (never an empty one: U-Boot
        # would run its last command again): the program's own, the terminal's, or none.
        await self._discard_stale()
        await session.send(_SPACE_LINE)
        body = self._after_late_prompt(
            self._before(await self._next_prompt(self.timeout, _SPACE_LINE))
        )
        # Text before this prompt may be a late answer to a key pressed before our
        # line (Ctrl-C's "<INTERRUPT>"): the answer to our line then comes next. When
        # otto pressed a key itself, that answer is owed for sure, so wait for it as
        # long as a slow (loaded, emulated) board may take; else only briefly.
        patience = NUDGE_AFTER
        if pressed:
            patience = max(NUDGE_AFTER, min(LATE_ANSWER_WAIT, deadline - time.monotonic()))
        for _ in range(2 + min(pressed, 2)):
            if not _ESCAPES.sub("", body).strip():
                break
            try:
                body = self._after_late_prompt(
                    self._before(await self._next_prompt(patience, _SPACE_LINE))
                )
            except ExpectTimeout:
                break  # the program prints something for a blank line: count on it
        self.echoes = echo_lines(body)
        log.debug("%s: started; %d line(s) of echo", self.where, self.echoes)

    def _after_late_prompt(self, body: str) -> str:
        """What follows the last prompt inside ``body``, when text before it came first.

        A late answer and the echo of otto's line can arrive in one read
        (``<INTERRUPT>\\n=> `` then `` \\n``): the late answer's prompt is then not
        where the output ends, so it was not taken for a prompt, and it sits
        inside the body of the answer to otto's line.
        """
        if not _ESCAPES.sub("", body).strip():
            return body
        ends = [m.end() for m in self._inner_prompt.finditer(body)]
        if not ends or ends[-1] >= len(body):
            return body
        return body[ends[-1] :]

    def _nudge_key(self) -> str:
        """What otto presses to see a prompt: Ctrl-C, never Enter.

        Where Ctrl-C would be a signal to the program otto just started (on a
        terminal), a line holding one space.
        """
        if self.start is not None and self.session.pty:
            return _SPACE_LINE
        return _CTRL_C

    async def _prompt_pending(self) -> ExpectMatch | None:
        """The prompt, when it is waiting already in what the session received."""
        try:
            return await self.session.expect(self._patterns, 0)
        except ExpectTimeout:
            return None

    def _hear(self, data: bytes) -> None:
        self._heard += len(data)

    async def _discard_stale(self) -> None:
        """Drop what arrived since the last prompt: it is no answer to the next line."""
        if not self._heard:
            return  # the common case, without a look at the session
        self._heard = 0
        try:
            stale = await self.session.expect(_EVERYTHING, 0)
        except ExpectTimeout:
            return
        log.debug("%s: dropping %r, printed since the last prompt", self.where, stale[-200:])

    # --- using ---------------------------------------------------------------

    async def cmd(self, text: str, *, timeout: float | None = None) -> str:
        """Send ``text`` as one line; return what the program printed before its next prompt.

        The answer has no echo of the line and no prompt; ``\\r\\n`` is folded
        to ``\\n`` and one trailing newline stripped.

        Args:
            text: one line, without a newline.
            timeout: seconds to wait for the prompt (default: the app's
                ``timeout``). On expiry the program is not interrupted: the next
                ``cmd`` first waits for the prompt this one missed.

        Raises:
            ExpectTimeout: no prompt within ``timeout``; carries what was received.
            ConnectionLost: the program ended (or the link to the host dropped).
            ValueError: ``text`` holds a line break.
        """
        if "\n" in text or "\r" in text:
            raise ValueError(f"cmd sends one line; got {text!r} (use send for raw text)")
        limit = self.timeout if timeout is None else timeout
        lock = self._lock
        if not lock.try_acquire():
            await lock.acquire()
        try:
            self._check_usable()
            deadline = time.monotonic() + limit
            while self._owed:
                # An earlier cmd timed out: its prompt comes first.
                await self._next_prompt(max(0.0, deadline - time.monotonic()), text, limit)
                self._owed -= 1
            if self._heard:
                await self._discard_stale()
            self._owed += 1  # before sending: a cancelled send may still have written
            found = await self._next_prompt(
                max(0.0, deadline - time.monotonic()), text, limit, send=text + "\n"
            )
            body = self._before(found)
            while self.echoes and text and not _ESCAPES.sub("", body).strip():
                # A late prompt from the keys pressed at start: ours is still to come.
                found = await self._next_prompt(max(0.0, deadline - time.monotonic()), text, limit)
                body = self._before(found)
            self._owed -= 1
            if found.dropped:
                return self._cut_answer(text, body, found.dropped)
            return answer_of(body, self.echoes)
        finally:
            lock.release()

    def _cut_answer(self, text: str, body: str, dropped: int) -> str:
        """An answer whose start the buffer dropped: marked, and a warning says so."""
        log.warning(
            "%s: the answer to %r was longer than %d characters; its first %d were dropped",
            self.where,
            text[:80],
            DEFAULT_MAX_CHARS,
            dropped,
        )
        # The echo went with the start: nothing more is cut.
        return f"[otto: {dropped} characters of output dropped here]\n" + answer_of(body, 0)

    async def send(self, text: str) -> None:
        """Write ``text`` to the program as it is (no newline added), e.g. ``"\\x03"``."""
        self._check_usable()
        await self.session.send(text)

    def _check_usable(self) -> None:
        if self._closed:
            raise ConnectionLost(self.where, f"the app `{self.start}` is closed")
        if self._ended is not None:
            raise ConnectionLost(self.where, self._ended)

    async def _next_prompt(
        self, timeout: float, text: str, limit: float | None = None, *, send: str = ""
    ) -> ExpectMatch:
        try:
            if send:
                found = await self.session.exchange(send, self._patterns, timeout)
            else:
                found = await self.session.expect(self._patterns, timeout)
        except ExpectTimeout as exc:
            raise ExpectTimeout(
                self.where, self.prompt.pattern, limit or timeout, exc.received
            ) from None
        except ConnectionLost as exc:
            self._ended = f"the connection ended while waiting for {text!r}: {exc.reason}"
            raise
        if found.index == 1:
            self._owed = 0
            self._ended = f"`{self.start}` ended (status {found.match.group(1)})"
            raise ConnectionLost(
                self.where, f"{self._ended} before answering {text!r}", self._before(found)
            )
        self._heard = 0
        return found

    @staticmethod
    def _before(found: ExpectMatch) -> str:
        """The text before the match (the prompt or the end marker)."""
        start, end = found.match.span()
        return found.text[: len(found.text) - (end - start)] if end > start else found.text

    # --- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Send ``exit`` (if given) and end the app; its own session is closed."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._release(graceful=True)

    async def _release(self, *, graceful: bool) -> None:
        session = self._session
        if session is None:
            return
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        try:
            if graceful and self._ended is None and not session.closed:
                await self._say_goodbye(session)
            if self.host.one_stream and self.start is not None and self._ended is None:
                # Closing a session on a console does not end what runs there:
                # the next user of the console must find its shell again.
                await self._end_program(session)
        finally:
            if self._owned:
                await session.close()

    async def _end_program(self, session: Session) -> None:
        for key, name in ((b"\x03", "Ctrl-C"), (b"\x04", "Ctrl-D")):
            if session.closed:
                return
            await session.send(key.decode())
            deadline = time.monotonic() + CLOSE_WAIT / 5
            try:
                while True:
                    found = await session.expect(
                        self._patterns, max(0.0, deadline - time.monotonic())
                    )
                    if found.index == 1:
                        self._ended = f"`{self.start}` ended"
                        return
            except (ExpectTimeout, ConnectionLost):
                log.debug("%s: `%s` still runs after %s", self.where, self.start, name)
        log.warning(
            "%s: `%s` did not end on Ctrl-C or Ctrl-D; the console's next user interrupts it",
            self.where,
            self.start,
        )

    async def _say_goodbye(self, session: Session) -> None:
        if self.exit is None:
            return
        await session.send(self.exit + "\n")
        if self.start is None:
            return
        # Let the program end by itself before its session goes (it may save state).
        wait = min(self.timeout, CLOSE_WAIT)
        deadline = time.monotonic() + wait
        try:
            while True:
                found = await session.expect(self._patterns, max(0.0, deadline - time.monotonic()))
                if found.index == 1:
                    self._ended = f"`{self.start}` ended"
                    return
        except (ExpectTimeout, ConnectionLost) as exc:
            log.warning(
                "%s: `%s` did not end within %gs of leaving the app: %s",
                self.where,
                self.start,
                wait,
                exc,
            )

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class OpeningApp:
    """What ``open_app`` returns: await it, or enter it with ``async with``.

    ``app = await host.open_app(...)`` (then ``await app.close()``) and
    ``async with host.open_app(...) as app:`` both give a started ``App``.
    """

    __slots__ = ("_app", "_opened")

    def __init__(self, app: App) -> None:
        self._app = app
        self._opened = False

    def __await__(self) -> Generator[Any, None, App]:
        return self._open().__await__()

    async def _open(self) -> App:
        if not self._opened:
            await self._app._open()
            self._opened = True
        return self._app

    async def __aenter__(self) -> App:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._opened:
            await self._app.close()
