"""lnserve_proc.py -- one lnserve process for the Python suites
(integration/, interop/, minilm/), which each add their own request
helpers on top:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from lnserve_proc import LnserveProcess

lnserve starts on 127.0.0.1 with HTTP on port 0 (any free port); the
ports come from the lines it prints ("lnserve listening on http://...",
"lnserve binary listening on tcp://..." and "... on unix:..."). Its
stderr is drained into stderr_lines by a thread, so a chatty server never
blocks on a full pipe. stop() sends a signal and waits; a server that
does not exit in time is killed and the test fails.
"""
import os
import signal
import subprocess
import threading


class LnserveProcess:
    def __init__(self, binary, *args, env=None, binary_listeners=0):
        """binary_listeners: how many "binary listening" lines to wait for
        besides HTTP's (a --binary-port and a --unix-socket print one each)."""
        self.args = [binary, "--address", "127.0.0.1", "--port", "0", *args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, **(env or {})))
        self.port = None         # HTTP (or HTTPS)
        self.binary_port = None  # the binary protocol over TCP, when asked for
        self.stderr_lines = []
        lines = []
        while self.port is None or sum("binary listening" in l for l in lines) < binary_listeners:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.kill()
                raise RuntimeError("server did not start: " + "".join(lines) +
                                   self.proc.stderr.read())
            lines.append(line)
            if "binary listening on tcp://" in line:
                self.binary_port = int(line.strip().rsplit(":", 1)[1])
            elif "listening on http" in line:
                self.port = int(line.strip().rsplit(":", 1)[1])
        self._t = threading.Thread(target=self._drain_stderr, daemon=True)
        self._t.start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=30):
        return "".join(self.stderr_lines[-n:])

    def sanitizer_reports(self):
        return [l for l in self.stderr_lines if "Sanitizer" in l or "runtime error" in l]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig, waits, returns the exit status (a hang is a failure)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no exit {timeout} s after signal {int(sig)}")
        self._t.join(timeout=5)
        return rc
