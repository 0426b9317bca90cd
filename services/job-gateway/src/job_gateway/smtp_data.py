"""A message's DATA as it arrives, into a spooled file: memory beyond a small threshold is disk.

aiosmtpd collects DATA as a list of lines in memory and joins them (twice the message in
memory for a moment), refuses lines over 1,000 octets and waits for CRLF only. Devices send
what they send: a scanner's firmware may end lines with a bare LF or write a long line, and
the message is still the one the user scanned. So the listener reads DATA itself and feeds
each piece here: line ends become CRLF (what MIME counts as a line), a line of any length is
taken, a leading dot is removed (RFC 5321 §4.5.2), and the message ends at a line holding a
single dot, whichever line end follows it.

What is spooled is held against the device's and its tenant's bytes in flight as it arrives
(`submission_limits.Hold`): a message that would pass their share is refused while it
streams (`refusal`), its spool discarded at once, and the rest of its DATA read and
dropped.
"""

from __future__ import annotations

from tempfile import SpooledTemporaryFile

from .errors import SubmissionTooLarge, TooManyBytesInFlight
from .submission_limits import Hold

END_LINES = (b".\r\n", b".\n")


class DataSpool:
    """`feed(piece)` each piece read (a line with its end, or a fragment of a longer line)
    until it returns True; then `file` holds the message from its start, or `too_large` says
    it passed `limit` bytes (nothing after the limit is kept, the rest is read and dropped),
    or `refusal` says why `hold` could not grow to take it (the spool is then discarded and
    the hold released at once, the rest read and dropped)."""

    def __init__(self, limit: int | None, threshold: int, hold: Hold | None = None) -> None:
        self.limit = limit
        self.hold = hold
        self.file: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=threshold)
        self.size = 0
        self.too_large = False
        self.refusal: TooManyBytesInFlight | SubmissionTooLarge | None = None
        self.refusal_sent = False
        self._line_start = True
        self._pending_cr = False  # a fragment ended in CR: its LF may follow in the next piece

    def feed(self, piece: bytes) -> bool:
        """True once the end-of-data line has been read (it is not part of the message)."""
        if self._line_start:
            if piece in END_LINES:
                if self.refusal is None:
                    self.file.seek(0)
                return True
            if piece.startswith(b"."):
                piece = piece[1:]
        if piece.endswith(b"\n"):
            self._line_start = True
            if not piece.endswith(b"\r\n") and not (piece == b"\n" and self._pending_cr):
                piece = piece[:-1] + b"\r\n"
        else:
            self._line_start = False
        self._pending_cr = piece.endswith(b"\r")
        self.size += len(piece)
        if self.limit is not None and self.size > self.limit:
            self.too_large = True
        if not self.too_large and self.refusal is None and self._held():
            self.file.write(piece)
        return False

    def _held(self) -> bool:
        """Whether the hold took the message so far; if not, the spool and the hold go now,
        not when the device ends its DATA."""
        if self.hold is not None:
            try:
                self.hold.grow_to(self.size)
            except (TooManyBytesInFlight, SubmissionTooLarge) as refusal:
                self.refusal = refusal
                self.file.close()
                self.hold.release()
                return False
        return True

    def close(self) -> None:
        self.file.close()
