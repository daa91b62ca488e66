"""Read a child's output line by line while it runs.

The child prints a line every 0.2 s.  Python buffers output written to a pipe, so
without help all lines would arrive together at the end; `unbuffered=True` sets
PYTHONUNBUFFERED for the child (`pty=True` works for programs that are not Python).
"""

import sys
import time

from taskkit import cmd

CHILD = """
import time
for i in range(5):
    print(f"step {i}")
    time.sleep(0.2)
"""

start = time.monotonic()
with (cmd(sys.executable, "-c", CHILD) | cmd("cat")).lines(unbuffered=True, timeout=30) as lines:
    for line in lines:
        print(f"{time.monotonic() - start:5.2f} s  {line}")

# Leaving the block early stops the whole pipeline: `yes` is killed and reaped here.
with cmd("yes", "again").lines() as lines:
    first_three = [next(lines) for _ in range(3)]
print(f"took {first_three} from an endless `yes`, then left the block; nothing is left running")
