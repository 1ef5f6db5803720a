"""The pure parts of local sandboxing: bwrap command lines, limits, the launcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controller.backends import bwrap
from controller.backends.limits import V1, Cgroups, Limits, launch_prefix, rlimits

LIMITS = Limits(memory_bytes=2**30, processes=100, file_bytes=2**20, open_files=256, tmp_bytes=2**24)


def _layout(tmp_path: Path) -> bwrap.Layout:
    venv = tmp_path / "envs" / "lean"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {tmp_path}/interp/bin\nversion = 3.11\n")
    return bwrap.Layout(tmp_path / "ws", tmp_path / "home", tmp_path / "run", venv / "bin" / "python")


def _pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def test_root_mode_drops_to_the_thread_uid_with_nothing(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    args = bwrap.argv(layout, 212345, 2**24, ["python", "-m", "k"], as_root=True)
    assert args[0] == "bwrap" and args[-3:] == ["python", "-m", "k"]
    for flag in ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"):
        assert flag in args
    drop = args.index("/usr/bin/setpriv")
    assert args[drop : drop + 7] == bwrap.drop_to(212345)
    assert "--unshare-user" not in args  # a user namespace would leave the uid unmapped


def test_user_mode_uses_a_user_namespace(tmp_path: Path) -> None:
    args = bwrap.argv(_layout(tmp_path), 1000, 2**24, ["k"], as_root=False)
    assert "--unshare-user" in args and "/usr/bin/setpriv" not in args
    assert args[args.index("--cap-drop") + 1] == "ALL"


def test_the_sandbox_sees_only_what_it_needs(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    args = bwrap.argv(layout, 1000, 2**24, ["k"], as_root=True)
    binds = dict((dest, src) for src, dest in _pairs(args, "--bind"))
    assert binds == {
        "/workspace": str(layout.workspace),
        "/home/sandbox": str(layout.home),
        "/run/kernel": str(layout.run),
    }
    ro = {dest for _, dest in _pairs(args, "--ro-bind") + _pairs(args, "--ro-bind-try")}
    assert "/" not in ro and "/etc" not in ro and str(tmp_path) not in ro
    assert {str(tmp_path / "envs" / "lean"), str(tmp_path / "interp")} <= ro  # the env and its interpreter
    assert {"/etc/passwd", "/etc/hosts"} <= ro
    # Folders bwrap creates above a mount are traversable, or the uid could not reach the env.
    made = {args[i + 3]: args[i + 1] for i, a in enumerate(args) if a == "--perms" and args[i + 2] == "--dir"}
    assert made[str(tmp_path / "envs")] == "0755" and set(made.values()) == {"0755"}
    assert "/tmp" not in made  # re-made, it would lose its 1777


def test_tmp_and_shm_are_bounded_and_writable(tmp_path: Path) -> None:
    args = bwrap.argv(_layout(tmp_path), 1000, 12345, ["k"], as_root=True)
    for dest in ("/tmp", "/dev/shm"):
        i = args.index(dest)
        assert args[i - 5 : i] == ["--perms", "1777", "--size", "12345", "--tmpfs"]


def test_python_roots_of_a_plain_interpreter(tmp_path: Path) -> None:
    python = tmp_path / "prefix" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.touch()
    assert bwrap.python_roots(python) == [tmp_path / "prefix"]


def test_sandbox_uids_are_stable_and_out_of_the_way() -> None:
    uid = bwrap.sandbox_uid("api-aaaaaaaaaaaaaaaa")
    assert uid == bwrap.sandbox_uid("api-aaaaaaaaaaaaaaaa") != bwrap.sandbox_uid("api-bbbbbbbbbbbbbbbb")
    assert bwrap.UID_BASE <= uid < bwrap.UID_BASE + bwrap.UID_SPAN


def test_prepare_writes_the_identity_files(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    bwrap.prepare(layout, 212345, as_root=False)
    assert (layout.run / "passwd").read_text().startswith("sandbox:x:212345:212345:")
    assert (layout.home / "tmp").is_dir() and layout.workspace.is_dir()


def test_rlimits_stand_in_for_missing_cgroups() -> None:
    assert rlimits(LIMITS, cgroups=True) == {"fsize": 2**20, "nofile": 256}
    assert rlimits(LIMITS, cgroups=False) == {"fsize": 2**20, "nofile": 256, "as": 2**30, "nproc": 100}


def test_cgroup_v1_files(tmp_path: Path) -> None:
    mem, pids = tmp_path / "memory" / "threadbox", tmp_path / "pids" / "threadbox"
    mem.mkdir(parents=True)
    pids.mkdir(parents=True)
    groups = Cgroups(V1, mem, pids)
    procs = groups.create("t1", 2**28, 50)
    assert procs == [str(mem / "t1" / "cgroup.procs"), str(pids / "t1" / "cgroup.procs")]
    assert (mem / "t1" / "memory.limit_in_bytes").read_text() == str(2**28)
    assert (pids / "t1" / "pids.max").read_text() == "50"
    assert not groups.oom_killed("t1")
    (mem / "t1" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert groups.oom_killed("t1")


def test_launch_prefix_joins_groups_and_sets_limits_before_exec(tmp_path: Path) -> None:
    procs = [tmp_path / "memory.procs", tmp_path / "pids.procs"]
    show = "import os, resource; print(os.getpid(), *resource.getrlimit(resource.RLIMIT_FSIZE))"
    argv = [*launch_prefix([str(p) for p in procs], {"fsize": 4096}), sys.executable, "-c", show]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    pid, soft, hard = run.stdout.split()
    # exec keeps the pid, so the kernel itself is what joined both groups.
    assert [p.read_text().strip() for p in procs] == [pid, pid]
    assert (soft, hard) == ("4096", "4096")


def test_launch_prefix_without_cgroups_is_prlimit_alone() -> None:
    assert launch_prefix([], {"nofile": 64}) == ["nice", "-n", "10", "prlimit", "--nofile=64:64", "--"]


def test_a_group_that_cannot_be_joined_stops_the_launch(tmp_path: Path) -> None:
    argv = [*launch_prefix([str(tmp_path / "missing" / "cgroup.procs")], {"nofile": 64}), "true"]
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 125
