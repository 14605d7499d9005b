"""The ticket system's per-message handler, as pipe(8) starts it: one process per message.

    ticket-handler -S -E handler.py TICKETS_DIR MEGABYTES SECONDS < message

(`ticket-handler` is a symbolic link to the Python interpreter, so that the process's name, which the
OOM killer logs and the replay counts, says what it is.) It reads the message, holds MEGABYTES of
memory it has written to (resident, as a Perl handler parsing the message into its data structures
is), waits SECONDS, then files the message as a ticket: TICKETS_DIR/ID.PID, written under a temporary
name and renamed, so a handler killed before it finished files nothing and pipe(8) defers the
message (Postfix delivers it again later). ID is the message's X-Incident-Id header, reduced to
[A-Za-z0-9-] (the message is the sender's: nothing of it reaches a file name as it is). The ticket's
one line is the time it was filed (Unix seconds).
"""
import os
import re
import sys
import time


def main():
    tickets, megabytes, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    data = sys.stdin.buffer.read()
    ballast = bytearray(b"\x5a") * (megabytes << 20)  # written to: every page resident
    head = data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"(?mi)^X-Incident-Id:[ \t]*([A-Za-z0-9-]{1,64})", head)
    ident = m.group(1).decode() if m else "unknown"
    time.sleep(seconds)
    tmp = os.path.join(tickets, f".tmp.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(f"{time.time():.3f}\n")
    os.rename(tmp, os.path.join(tickets, f"{ident}.{os.getpid()}"))
    del ballast
    return 0


if __name__ == "__main__":
    sys.exit(main())
