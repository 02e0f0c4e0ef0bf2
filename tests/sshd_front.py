"""A second sshd of a test's own in front of the remote engine, to drop its connections at will.

deploy/engine/ensure-remote-engine.sh runs one sshd (port 18522) that other tests share; a
test that stops an sshd mid-apply starts this one instead, on its own port, in front of the
same engine socket, and never touches the shared one. Same approach as the script: the
script's client key, a host key generated here, a known_hosts file holding it (strict host key
checking), `SetEnv DOCKER_HOST` for `docker system dial-stdio`. The client side reaches it
through an `ssh` on PATH that runs /usr/bin/ssh with this directory's own client config, so
~/.ssh/config (the shared block) is left alone.

`stop` ends the listener and every session it forked (all descendants of the process started
here, by pid): established connections drop as they would when the link or host goes down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REMOTE_SSH = Path("/var/lib/reconciler-remote/ssh")
CLIENT_KEY = REMOTE_SSH / "client_ed25519"
ENGINE_SOCKET = "/var/run/reconciler-remote/docker.sock"
SSH = Path("/usr/bin/ssh")
SSHD = Path("/usr/sbin/sshd")


class SshdFront:
    """An sshd on 127.0.0.1:`port` for the remote engine, with its own host key and config."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        host_key = directory / "host_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        authorized = directory / "authorized_keys"
        authorized.write_text(CLIENT_KEY.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        public = host_key.with_suffix(".pub").read_text().split()[:2]
        (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(public)}\n")
        # StrictModes off: the files live under /tmp (world-writable), which sshd's mode
        # check refuses outside a home directory; the sshd listens on loopback only.
        (directory / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
            f"PidFile {directory / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            "StrictModes no\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "AllowTcpForwarding no\nX11Forwarding no\nPermitTTY no\nPrintMotd no\n"
            f"MaxStartups 100:30:200\nSetEnv DOCKER_HOST=unix://{ENGINE_SOCKET}\n"
        )
        (directory / "ssh_config").write_text(
            f"Host 127.0.0.1\n    IdentityFile {CLIENT_KEY}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {directory / 'known_hosts'}\n"
            "    StrictHostKeyChecking yes\n    BatchMode yes\n"
        )
        bin_dir = directory / "bin"
        bin_dir.mkdir(exist_ok=True)
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {SSH} -F {directory / "ssh_config"} "$@"\n')
        wrapper.chmod(0o755)

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment for a process that reaches the engine through this sshd."""
        return {**os.environ, "PATH": f"{self.directory / 'bin'}:{os.environ['PATH']}"}

    def start(self) -> None:
        """Start the sshd in the foreground (a child of this process); return once it listens."""
        assert self.process is None, "already started"
        config = self.directory / "sshd_config"
        subprocess.run([str(SSHD), "-t", "-f", str(config)], check=True)
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(config), "-E", str(self.directory / "sshd.log")]
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.directory / "sshd.log").read_text()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"sshd on port {self.port} did not listen within 20 s")

    def stop(self) -> None:
        """SIGKILL the listener and every session it forked (its descendants, by pid)."""
        if self.process is None:
            return
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None


def _descendants(root: int) -> list[int]:
    """The pids of every live descendant of `root` (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found
