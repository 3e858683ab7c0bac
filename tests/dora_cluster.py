"""Run dora graphs the ways a robot runs them, for tests: under `dora up`, or on several daemons with machine ids.

`dora run GRAPH` needs no helper. A robot instead keeps a coordinator and a daemon up (`dora up`) and starts graphs
on them (`dora start GRAPH --attach`); a split deployment runs one daemon per machine (`dora daemon --machine-id M`),
and a node's `deploy: {machine: M}` picks its daemon. Both context managers here tear every process they started
down again, also when the body fails, so a test leaves no coordinator, daemon or node behind.

Under `dora start` nodes inherit the daemon's environment, not the CLI's: per-run settings travel as `--env K=V`,
and $PWD, against which operators/config.py resolves relative ASTRA_* paths, is the daemon's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
DORA = VENV_BIN / "dora"
STARTUP_TIMEOUT_S = 20.0  # a coordinator and its daemons come up in about a second
SHUTDOWN_TIMEOUT_S = 10.0  # how long a stopped process may take to exit before it is killed


class DoraError(RuntimeError):
    """A dora command failed or timed out; the message holds its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dora_env(**overrides: str) -> dict[str, str]:
    """This process's environment with the venv first on PATH: nodes run with the first `python` on it."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **overrides}


def is_running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an orphan's zombie waits for init, which may never reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass(frozen=True)
class DoraCluster:
    """A running coordinator and its daemons; `daemon_pids` maps a machine id ('' for `dora up`'s) to its daemon."""

    port: int
    env: dict[str, str]
    daemon_pids: dict[str, int]
    coordinator_pid: int

    def dora(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run one dora CLI command against this coordinator."""
        return subprocess.run(
            [str(DORA), *args],
            env={**self.env, "DORA_COORDINATOR_PORT": str(self.port)},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def run_graph(self, graph: Path, node_env: Mapping[str, str], timeout_s: float = 60.0) -> str:
        """`dora start GRAPH --attach`: start the graph, wait for it to end and return dora's output.

        Raises DoraError when the dataflow fails or outlives `timeout_s` (it is then stopped by force)."""
        env_args = [arg for key, value in node_env.items() for arg in ("--env", f"{key}={value}")]
        try:
            result = self.dora("start", str(graph), "--attach", *env_args, timeout_s=timeout_s)
        except subprocess.TimeoutExpired as timeout:
            self.dora("stop", "--all", "--force")
            output = timeout.output.decode(errors="replace") if isinstance(timeout.output, bytes) else timeout.output
            raise DoraError(f"{graph} did not finish within {timeout_s:.0f} s:\n{output}") from None
        if result.returncode != 0:
            raise DoraError(f"dora start {graph} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    @property
    def pids(self) -> list[int]:
        return [self.coordinator_pid, *self.daemon_pids.values()]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after a grace period, for the process and its whole session (the nodes it spawned)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # A node that outlived its daemon is still in the session the daemon led (start_new_session below).
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _daemon_machines(cluster: DoraCluster) -> set[str]:
    """Machine ids of the daemons registered with the coordinator (`dora cluster status` lists `<machine>-<uuid>`)."""
    lines = cluster.dora("cluster", "status").stdout.splitlines()
    return {line.split()[0].rsplit("-", 5)[0] for line in lines[1:] if line.strip() and "-" in line.split()[0]}


@contextmanager
def dora_cluster(machines: Sequence[str], workdir: Path) -> Iterator[DoraCluster]:
    """A coordinator and one daemon per machine id, all on free ports, started from `workdir` (logs, `_work/`).

    The daemons meet through one zenoh rendezvous endpoint (`--zenoh-peer`), as containers have no multicast."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dora_env()
    port, zenoh_port = free_port(), free_port()
    processes: list[subprocess.Popen] = []

    def spawn(name: str, *args: str) -> subprocess.Popen:
        with open(workdir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [str(DORA), *args],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        return process

    try:
        coordinator = spawn("coordinator", "coordinator", "--port", str(port), "--store", "memory")
        daemons = {
            machine: spawn(
                f"daemon-{machine}",
                "daemon",
                "--machine-id",
                machine,
                "--coordinator-port",
                str(port),
                "--local-listen-port",
                str(free_port()),
                "--zenoh-peer",
                f"tcp/127.0.0.1:{zenoh_port}",
            )
            for machine in machines
        }
        cluster = DoraCluster(port, env, {m: p.pid for m, p in daemons.items()}, coordinator.pid)
        if not _wait_until(lambda: _daemon_machines(cluster) >= set(machines), STARTUP_TIMEOUT_S):
            raise DoraError(f"daemons {list(machines)} did not register; logs in {workdir}")
        yield cluster
    finally:
        for process in reversed(processes):  # daemons first: they stop their nodes
            _stop(process)


def _dora_up_pids(port: int) -> dict[str, int]:
    """The `dora coordinator` and `dora daemon` that `dora up` started for the coordinator on `port`."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode().split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for role, port_flag in (("coordinator", "--port"), ("daemon", "--coordinator-port")):
            if (
                str(DORA) in args
                and role in args
                and port_flag in args
                and args[args.index(port_flag) + 1] == str(port)
            ):
                found[role] = int(cmdline.parent.name)
    return found


@contextmanager
def dora_up(workdir: Path) -> Iterator[DoraCluster]:
    """`dora up` on a free coordinator port, then `dora down` (also spelled `dora destroy`) on the way out.

    HOME points at `workdir`, so the coordinator's store (~/.dora/coordinator.redb) is this run's own. `dora up`
    has no flag for the daemon's local listen port (53291, for dynamic nodes); graphs without dynamic nodes run
    even when another daemon holds it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dora_env(HOME=str(workdir), DORA_COORDINATOR_PORT=str(port))
    pids: dict[str, int] = {}
    try:
        up = subprocess.run([str(DORA), "up"], cwd=workdir, env=env, capture_output=True, text=True, timeout=30)
        if up.returncode != 0:
            raise DoraError(f"dora up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")

        def both_found() -> bool:
            pids.update(_dora_up_pids(port))
            return set(pids) == {"coordinator", "daemon"}

        if not _wait_until(both_found, STARTUP_TIMEOUT_S):
            raise DoraError(f"dora up started {pids}, not a coordinator and a daemon")
        yield DoraCluster(port, env, {"": pids["daemon"]}, pids["coordinator"])
    finally:
        pids.update(_dora_up_pids(port))
        # `dora down` sometimes reports "WS connection closed" although it did tear down: the exit is what counts.
        subprocess.run([str(DORA), "down"], cwd=workdir, env=env, capture_output=True, timeout=30, check=False)
        if not _wait_until(lambda: not any(map(is_running, pids.values())), SHUTDOWN_TIMEOUT_S):
            for pid in filter(is_running, pids.values()):
                os.kill(pid, signal.SIGKILL)
