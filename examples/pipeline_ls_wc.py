"""Connect two programs with a pipe, as the shell's `ls -l | wc -l` does.

The tutorial builds this by hand with two subprocess.Popen calls; with taskkit the
pipeline is one expression, every stage is checked, and nothing is left running.
"""

from taskkit import PipelineFailed, cmd

done = (cmd("ls", "-l") | cmd("wc", "-l")).run(timeout=10, text=True)
print(f"`ls -l | wc -l` printed {done.stdout.strip()!r}")
print(f"exit statuses, one per stage: {done.returncodes}")

# A failure anywhere in the pipeline is reported, not only in the last stage.
try:
    (cmd("ls", "-l", "/no/such/directory") | cmd("wc", "-l")).run(timeout=10)
except PipelineFailed as err:
    print(f"failure reported: {err}")

# `yes | head -n 3`: yes dies of SIGPIPE when head stops reading; that is not a failure.
done = (cmd("yes") | cmd("head", "-n", "3")).run(text=True)
print(f"`yes | head -n 3` printed {done.stdout.split()} with statuses {done.returncodes}")
