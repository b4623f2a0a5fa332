"""A dependency-free sd_notify client (the protocol is one datagram per message).

systemd passes the path of its notification socket in `$NOTIFY_SOCKET`; a
leading `@` names a socket in the Linux abstract namespace. Without the
variable (not started by systemd with Type=notify), every call is a no-op, so
the same code runs in the foreground. Sending never raises: a service must not
die because its supervisor's socket went away.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Send READY, WATCHDOG, STATUS and STOPPING notifications to systemd."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET") or None
        self.address = address
        self._sock: socket.socket | None = None
        self._target: str | bytes | None = None
        if address:
            if address.startswith("@"):
                # Abstract namespace: a leading NUL byte instead of '@'.
                self._target = b"\0" + address[1:].encode()
            elif address.startswith("/"):
                self._target = address
            else:
                log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an @abstract name", address)

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; True if it was sent."""
        if self._target is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                # Non-blocking: a receiver that stops reading must never stall the caller's
                # main loop (a full datagram queue makes sendto block otherwise).
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto(message, self._target)
            return True
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", assignments, exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s() -> float | None:
    """The watchdog period systemd expects (`$WATCHDOG_USEC`), or None when it is off.

    `$WATCHDOG_PID`, when set, must be this process (systemd sets it for the main PID only).
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
