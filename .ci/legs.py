#!/usr/bin/env python3
"""The legs of ``make test``: the suite on the host, and what it proves on other versions.

Legs (``--legs`` picks some; ``all``, the default, is every leg but ``prom3``):

- ``py3.11``: the whole suite on the host's Python against Debian 12's Prometheus 2.42 and
  Alertmanager 0.25 (the command ``make test`` ran before the matrix existed);
- ``py3.14``: the whole suite but the browser test, in a Debian sid root built by debootstrap
  and cached under ``build/``, against Prometheus 3.5 / Alertmanager 0.33 from Debian sid's
  packages, unpacked under ``build/`` (``TME_*`` tell the tests which binaries to run): every
  test that talks to a binary, the end-to-end demo included, runs on both versions;
- ``py3.13``: the tests of what differs between Pythons (``VERSION_SENSITIVE``: the census and
  its fork, the collectors' gc and loop hooks, the explorer's reference walks, pools, routes,
  install), not the generated rules, dashboards, docs and demo that 3.11 and 3.14 already run
  against both Prometheus versions: the whole run stays within its 20 minutes;
- ``prom3`` (not in ``all``: ``py3.14`` covers it): the tests marked ``integration`` on the
  host's Python against the sid binaries;
- ``py3.15``: install and smoke run (``.ci/smoke.py``) in the same root;
- ``deps-oldest``, ``deps-newest``: the oldest declared and the newest tornado and
  prometheus_client, each a smoke run plus ``promtool check metrics`` of its scrape;
- ``apps``: ``tests/apps`` (only there) in a virtualenv of real Tornado apps from the registry
  (Dask, Flower with Celery, Bokeh, Panel, terminado): the recipes of docs/installing.md run
  in them.

Everything but ``py3.11`` needs root on Debian with apt (debootstrap is installed through apt):
elsewhere those legs are skipped with a note. The mirror is the one the machine's apt already
uses (read from its sources), never a hard-coded host. Test legs run two at a time (2 cores);
preparation (downloads, debootstrap, pip) overlaps them. Prints one line per leg (duration,
result) and exits non-zero when any leg failed.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
LOGS = BUILD / "legs"

# What sid must provide: package -> upstream series tested (a new Debian revision or patch release
# of the series is taken, a new series fails the leg until someone looks at it).
SID_BINARIES = {"prometheus": "3.5.", "promtool": "3.5.", "prometheus-alertmanager": "0.33."}
SUITE_PYTHONS = ("3.13", "3.14")
SMOKE_PYTHON = "3.15"
ROOT_PACKAGES = sorted(
    f"python{v}{suffix}" for v in (*SUITE_PYTHONS, SMOKE_PYTHON) for suffix in ("", "-venv")
)
BROWSER_TEST = "tests/explorer/test_explorer_browser.py"
E2E_PYTHON = "3.14"  # the sid leg that also runs the end-to-end demo against Prometheus 3
# What the other sid Python runs: the code that reads interpreter internals (gc callbacks and
# generations, fork, referents, asyncio's loop and ready queue) or Tornado's routing.
VERSION_SENSITIVE = (
    *("tests/census", "tests/collectors", "tests/explorer", "tests/pools", "tests/web"),
    *("tests/test_install.py", "tests/test_install_safety.py", "tests/test_start_in_thread.py"),
    *("tests/test_workers.py", "tests/test_lazy_imports.py"),
)
TEST_JOBS = 2
APPS_TESTS = "tests/apps"
# The apps the recipes of docs/installing.md are tested in (newest releases, the venv rebuilt
# daily), and what their tests need beside the package's own dependencies.
APPS_REQUIREMENTS = [
    *("tornado", "prometheus-client", "psutil", "pympler"),
    *("distributed", "bokeh", "panel", "flower", "celery", "terminado"),
    *("pytest", "PyYAML"),
]

_stop = threading.Event()
_children: set[subprocess.Popen] = set()  # stopped on SIGTERM/Ctrl-C, so that no test outlives us


class Skip(Exception):
    """A leg that cannot run here (not root, not Debian...): reported, not failed."""


# ---------------------------------------------------------------------------- helpers


def run(
    argv: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 1200,
) -> None:
    """Run ``argv`` appending to ``log``; raise with the log's tail if it fails."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        _children.add(process)
        try:
            code = process.wait(timeout=timeout)
        except BaseException:
            stop_group(process)
            raise
        finally:
            _children.discard(process)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{argv[0]} {' '.join(argv[1:3])}... exited {code} (log {log}):\n{tail}")


def first_line(detail: str) -> str:
    """The first line of a leg's detail, cut to fit a report line."""
    return detail.splitlines()[0][:110] if detail else ""


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group of a child we started, then wait (SIGKILL after 20 s)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def can_build() -> str | None:
    """Why the sid legs cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root"
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "not Debian with apt"
    return None


def apt_mirror() -> tuple[str, str | None]:
    """The Debian mirror (and its keyring) the machine's apt uses for its own release."""
    release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    codename = release.get("VERSION_CODENAME", "").strip('"')
    sources = Path("/etc/apt")
    entries: list[tuple[list[str], list[str], str | None]] = []
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                match = re.match(
                    r"\s*deb\s+(\[(?P<opts>[^]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line
                )
                if match:
                    key = re.search(r"signed-by=(\S+)", match["opts"] or "")
                    entries.append(([match["uri"]], [match["suite"]], key and key[1]))
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^(\S+):\s*(.*)$", stanza, re.M))
            if fields.get("Enabled", "yes").lower() != "no" and "deb" in fields.get("Types", ""):
                entries.append(
                    (
                        fields.get("URIs", "").split(),
                        fields.get("Suites", "").split(),
                        fields.get("Signed-By"),
                    )
                )
    for uris, suites, keyring in entries:
        if codename in suites and uris:
            return uris[0].rstrip("/"), keyring
    raise Skip(f"no apt source for {codename!r} in /etc/apt to take the Debian mirror from")


def pip_config() -> dict[str, str]:
    """The pip settings that decide where pip downloads from and whom it trusts, as pip here
    sees them (``pip config list`` plus ``PIP_*``): carried into the sid root."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.match(r"(?:[\w:.-]*\.)?([\w-]+)='(.*)'$", line.strip())
        if match:
            settings[match[1]] = match[2]
    for key, value in os.environ.items():
        if key.startswith("PIP_"):
            settings[key[4:].lower().replace("_", "-")] = value
    return settings


# ---------------------------------------------------------------------------- preparation


class Apt:
    """apt-get on Debian sid with a private sources list and state: the machine's apt
    configuration is never touched."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.dir = BUILD / "apt-sid"
        self.mirror, keyring = apt_mirror()
        signed = f"[signed-by={keyring}] " if keyring else ""
        for sub in ("lists/partial", "cache/archives/partial"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "sources.list").write_text(f"deb {signed}{self.mirror} sid main\n")
        self.options = [
            "-o",
            f"Dir::Etc::sourcelist={self.dir / 'sources.list'}",
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            f"Dir::State::Lists={self.dir / 'lists'}",
            "-o",
            f"Dir::Cache={self.dir / 'cache'}",
            "-o",
            "APT::Sandbox::User=root",  # build/ is root's; _apt could not write there
        ]

    def update(self) -> None:
        run(["apt-get", *self.options, "-qq", "update"], self.log)

    def candidate(self, package: str) -> str:
        policy = subprocess.run(
            ["apt-cache", *self.options, "policy", package],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"Candidate:\s*(\S+)", policy)
        if not match or match[1] == "(none)":
            raise RuntimeError(f"sid has no {package}")
        return match[1]


def ensure_host_packages(log: Path, *packages: str) -> None:
    missing = [p for p in packages if not shutil.which(p)]
    if missing:
        run(["apt-get", "-qq", "update"], log)
        run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            log,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def sid_binaries(log: Path) -> dict[str, str]:
    """Prometheus 3 / Alertmanager 0.33 from sid's .debs, unpacked (not installed) under build/;
    returns the TME_* variables pointing at them. Reused while the pins match."""
    out = BUILD / "sid-binaries"
    stamp = out / "versions.txt"
    if not stamp.exists():
        apt = Apt(log)
        apt.update()
        versions = {p: apt.candidate(p) for p in SID_BINARIES}
        for package, series in SID_BINARIES.items():
            if not re.sub(r"^\d+:", "", versions[package]).startswith(series):
                raise RuntimeError(
                    f"sid's {package} is {versions[package]}, not the {series}x "
                    "this leg pins: update SID_BINARIES in .ci/legs.py"
                )
        debs = BUILD / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        run(
            [
                "apt-get",
                *apt.options,
                "-qq",
                "download",
                *(f"{p}={v}" for p, v in versions.items()),
            ],
            log,
            cwd=debs,
        )
        shutil.rmtree(out / "root", ignore_errors=True)
        (out / "root").mkdir(parents=True)
        for package, version in versions.items():
            (deb,) = debs.glob(f"{package}_{version.split(':')[-1]}_*.deb")
            run(["dpkg-deb", "-x", str(deb), str(out / "root")], log)
        stamp.write_text("".join(f"{p}={v}\n" for p, v in versions.items()))
    binaries = out / "root/usr/bin"
    env = {
        "TME_PROMETHEUS": str(binaries / "prometheus"),
        "TME_PROMTOOL": str(binaries / "promtool"),
        "TME_ALERTMANAGER": str(binaries / "prometheus-alertmanager"),
        "TME_AMTOOL": str(binaries / "amtool"),
    }
    for path in env.values():
        run([path, "--version"], log)
    return env


class SidRoot:
    """A Debian sid root with the newer CPythons, built once by debootstrap and cached; while
    open, /proc and the repository (at /src) are mounted in it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.path = BUILD / "sid-root"
        self.mounts: list[Path] = []

    def build(self) -> None:
        stamp = self.path / ".tme-packages"
        wanted = ",".join(ROOT_PACKAGES)
        if stamp.exists() and stamp.read_text() == wanted:
            return
        self.unmount_all()
        if self.path.exists():
            run(["rm", "-rf", "--one-file-system", str(self.path)], self.log)
        ensure_host_packages(self.log, "debootstrap")
        mirror, _ = apt_mirror()
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={wanted}",
                "sid",
                str(self.path),
                mirror,
            ],
            self.log,
        )
        stamp.write_text(wanted)

    def _mounted(self) -> list[str]:
        prefix = str(self.path) + "/"
        points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        return [p for p in points if p.startswith(prefix)]

    def unmount_all(self) -> None:
        """Unmount whatever is mounted under the root, deepest first (also a killed run's)."""
        for point in sorted(self._mounted(), key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
        self.mounts.clear()
        if self._mounted():
            raise RuntimeError(f"still mounted under {self.path}: {self._mounted()}")

    def _mount(self, argv: list[str], target: Path) -> None:
        run(["mount", *argv, str(target)], self.log)
        self.mounts.append(target)

    def __enter__(self) -> SidRoot:
        self.unmount_all()
        self._mount(["-t", "proc", "proc"], self.path / "proc")
        (self.path / "src").mkdir(exist_ok=True)
        self._mount(["--bind", str(REPO)], self.path / "src")
        node = shutil.which("node")
        if node:  # the dashboards' type check runs tsc
            target = self.path / "usr/local/bin/node"
            target.touch()
            self._mount(["--bind", os.path.realpath(node)], target)
        shutil.copy("/etc/resolv.conf", self.path / "etc/resolv.conf")
        self._pip_setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount_all()

    def _pip_setup(self) -> None:
        """pip inside reaches the same registry as here: same index settings, same CA bundle."""
        settings = pip_config()
        parser = configparser.ConfigParser()
        parser["global"] = {}
        for key in (
            "index-url",
            "extra-index-url",
            "trusted-host",
            "default-timeout",
            "disable-pip-version-check",
        ):
            if key in settings:
                value = " ".join(u for u in settings[key].split() if not u.startswith("file:"))
                if value:
                    parser["global"][key] = value
        cert = settings.get("cert")
        if cert and Path(cert).exists():
            inside = self.path / cert.lstrip("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(cert, inside)
            parser["global"]["cert"] = cert
        with (self.path / "etc/pip.conf").open("w") as out:
            parser.write(out)

    def env(self, extra: dict[str, str]) -> list[str]:
        base = {
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PIP_CONFIG_FILE": "/etc/pip.conf",
            "PYTHONDONTWRITEBYTECODE": "1",
            **extra,
        }
        cert = pip_config().get("cert")
        if cert:
            base["PIP_CERT"] = cert
        return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in base.items())]

    def run(
        self,
        argv: list[str],
        log: Path,
        *,
        extra: dict[str, str] | None = None,
        timeout: float = 1200,
    ) -> None:
        inner = [*self.env(extra or {}), "sh", "-c", 'cd /src && exec "$@"', "sh", *argv]
        run(["chroot", str(self.path), *inner], log, timeout=timeout)

    def venv(self, version: str, spec: str, log: Path) -> str:
        """/opt/venv-<version> with ``spec`` installed from /src (rebuilt on a pyproject change)."""
        venv = f"/opt/venv-{version}"
        key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()
        stamp = self.path / venv.lstrip("/") / ".tme-installed"
        if not (stamp.exists() and stamp.read_text() == key):
            shutil.rmtree(self.path / venv.lstrip("/"), ignore_errors=True)
            self.run([f"python{version}", "-m", "venv", venv], log)
            self.run([f"{venv}/bin/python", "-m", "pip", "install", "-q", "-e", spec], log)
            stamp.write_text(key)
        return f"{venv}/bin/python"


def host_venv(name: str, requirements: list[str], log: Path, *, daily: bool = False) -> Path:
    """build/venvs/<name>: the package (no deps) plus exactly ``requirements``; ``daily``
    rebuilds it once a day (the newest releases move)."""
    venv = BUILD / "venvs" / name
    day = time.strftime("%Y-%m-%d") if daily else ""
    key = hashlib.sha256(
        (REPO / "pyproject.toml").read_bytes() + repr(requirements).encode() + day.encode()
    )
    stamp = venv / ".tme-installed"
    if not (stamp.exists() and stamp.read_text() == key.hexdigest()):
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)], log)
        python = str(venv / "bin/python")
        run([python, "-m", "pip", "install", "-q", *requirements], log)
        run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)], log)
        stamp.write_text(key.hexdigest())
    return venv / "bin/python"


def declared_floor(name: str) -> str:
    """``name==<lower bound>`` from pyproject's dependencies (``tornado>=6.4.2`` -> 6.4.2)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.match(rf"{re.escape(name)}\s*>=\s*([\w.]+)", dep)
        if match:
            return f"{name}=={match[1]}"
    raise RuntimeError(f"pyproject declares no lower bound for {name}")


# ---------------------------------------------------------------------------- legs


class Legs:
    def __init__(self, selected: list[str], pytest_args: list[str], python: str) -> None:
        self.selected = selected
        self.python = python
        self.pytest_args = pytest_args
        self.results: dict[str, tuple[str, float, str]] = {}
        self.pool = ThreadPoolExecutor(max_workers=12)
        self.cpu = threading.Semaphore(TEST_JOBS)
        LOGS.mkdir(parents=True, exist_ok=True)
        self.prep: dict[str, Future] = {}

    def log(self, name: str) -> Path:
        path = LOGS / f"{name}.log"
        path.write_text("")
        return path

    def leg(self, name: str, body, *needs: str) -> Future | None:
        if name not in self.selected or name in self.results:  # not asked for, or skipped
            return None

        def go() -> None:
            started = time.monotonic()
            try:
                inputs = [self.prep[n].result() for n in needs]
                with self.cpu:
                    started = time.monotonic()  # the wait for a slot is not the leg's time
                    if _stop.is_set():
                        raise RuntimeError("interrupted")
                    detail = body(*inputs) or ""
                self.results[name] = ("passed", time.monotonic() - started, detail)
            except Skip as why:
                self.results[name] = ("skipped", 0.0, str(why))
            except BaseException as error:  # noqa: BLE001 - a failing leg names itself
                self.results[name] = ("FAILED", time.monotonic() - started, str(error))
            status, seconds, detail = self.results[name]
            print(
                f"leg {name}: {status} in {seconds:.0f}s {first_line(detail)}",
                flush=True,
            )

        return self.pool.submit(go)

    def prepare(self, name: str, body) -> None:
        def go():
            log = self.log(f"prepare-{name}")
            started = time.monotonic()
            try:
                return body(log)
            finally:
                print(f"prepared {name} in {time.monotonic() - started:.0f}s", flush=True)

        self.prep[name] = self.pool.submit(go)

    def start(self) -> None:
        sid = {"prom3", "py3.13", "py3.14", "py3.15"} & set(self.selected)
        deps = {"deps-oldest", "deps-newest"} & set(self.selected)
        why = can_build()
        root = SidRoot(LOGS / "prepare-sid-root.log")
        if why and (sid or deps):
            for name in sorted(sid | deps):
                self.results[name] = ("skipped", 0.0, f"{why}: needs root on Debian with apt")
            sid, deps = set(), set()
        if sid:
            self.prepare("sid-binaries", sid_binaries)
        if sid - {"prom3"}:

            def build_root(log: Path) -> SidRoot:
                root.log = log
                root.build()
                root.__enter__()
                for version in SUITE_PYTHONS:
                    if f"py{version}" in sid:
                        root.venv(version, "/src[test]", log)
                if f"py{SMOKE_PYTHON}" in sid:
                    root.venv(SMOKE_PYTHON, "/src", log)
                return root

            self.prepare("sid-root", build_root)
        floors = [declared_floor("tornado"), declared_floor("prometheus-client")]
        if "deps-oldest" in deps:
            self.prepare(
                "deps-oldest",
                lambda log: host_venv("deps-oldest", [*floors, "psutil", "pympler"], log),
            )
        if "deps-newest" in deps:
            self.prepare(
                "deps-newest",
                lambda log: host_venv(
                    "deps-newest",
                    ["tornado", "prometheus-client", "psutil", "pympler"],
                    log,
                    daily=True,
                ),
            )
        if "apps" in self.selected:
            self.prepare("apps", lambda log: host_venv("apps", APPS_REQUIREMENTS, log, daily=True))
        futures = [
            self.leg("apps", self.apps, "apps"),  # short: started first, beside the suite
            self.leg("py3.11", self.host_suite),
            self.leg("prom3", self.prom3, "sid-binaries"),
            # the longest (with the end-to-end tests) first, so it does not run alone at the end
            *(
                self.leg(f"py{v}", self.chroot_suite(v), "sid-root", "sid-binaries")
                for v in sorted(SUITE_PYTHONS, key=lambda v: v != E2E_PYTHON)
            ),
            self.leg(f"py{SMOKE_PYTHON}", self.chroot_smoke, "sid-root"),
            self.leg("deps-oldest", self.smoke("deps-oldest"), "deps-oldest"),
            self.leg("deps-newest", self.smoke("deps-newest"), "deps-newest"),
        ]
        try:
            for future in futures:
                if future is not None:
                    future.result()
        finally:
            root.unmount_all()

    # -- the legs' bodies

    def pytest(self, python: str, log: Path, env: dict[str, str], *args: str) -> str:
        run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], log, env=env)
        return summary(log)

    def host_suite(self) -> str:
        return self.pytest(
            self.python,
            self.log("py3.11"),
            dict(os.environ),
            f"--ignore={APPS_TESTS}",
            *self.pytest_args,
        )

    def apps(self, python: Path) -> str:
        return self.pytest(str(python), self.log("apps"), dict(os.environ), APPS_TESTS)

    def prom3(self, binaries: dict[str, str]) -> str:
        env = {**os.environ, **binaries}
        return self.pytest(
            self.python, self.log("prom3"), env, "-m", "integration", f"--ignore={APPS_TESTS}"
        )

    def chroot_suite(self, version: str):
        def body(root: SidRoot, binaries: dict[str, str]) -> str:
            log = self.log(f"py{version}")
            # Debian's Alertmanager reads its default template from /usr/share (not in the root).
            shutil.copytree(
                BUILD / "sid-binaries/root/usr/share/prometheus/alertmanager",
                root.path / "usr/share/prometheus/alertmanager",
                dirs_exist_ok=True,
            )
            inside = {k: "/src/" + str(Path(v).relative_to(REPO)) for k, v in binaries.items()}
            selection = [f"--ignore={APPS_TESTS}", f"--ignore={BROWSER_TEST}"]
            if version != E2E_PYTHON:
                selection += VERSION_SENSITIVE
            root.run(
                [
                    f"/opt/venv-{version}/bin/python",
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    "-q",
                    *selection,
                ],
                log,
                extra={"CI": os.environ.get("CI", ""), **inside},
            )
            return summary(log)

        return body

    def chroot_smoke(self, root: SidRoot) -> str:
        log = self.log(f"py{SMOKE_PYTHON}")
        out = BUILD / f"smoke-py{SMOKE_PYTHON}.prom"
        root.run(
            [f"/opt/venv-{SMOKE_PYTHON}/bin/python", ".ci/smoke.py", f"/src/build/{out.name}"], log
        )
        promtool_check(out, log)
        return last_line(log, "smoke ok")

    def smoke(self, name: str):
        def body(python: Path) -> str:
            log = self.log(name)
            out = BUILD / f"smoke-{name}.prom"
            run([str(python), ".ci/smoke.py", str(out)], log)
            promtool_check(out, log)
            return last_line(log, "smoke ok")

        return body


def promtool_check(exposition: Path, log: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is missing (make binaries installs it)")
    with exposition.open("rb") as stdin:
        result = subprocess.run([promtool, "check", "metrics"], stdin=stdin, capture_output=True)
    with log.open("ab") as out:
        out.write(b"$ promtool check metrics\n" + result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"promtool check metrics: {(result.stdout + result.stderr).decode()}")


def summary(log: Path) -> str:
    """pytest's closing line (``354 passed, 19 skipped in 123.45s``)."""
    lines = re.findall(
        r"^=*\s*(\d+ (?:passed|failed|error).* in [\d.]+s.*?)=*$",
        log.read_text(errors="replace"),
        re.M,
    )
    return lines[-1].strip() if lines else ""


def last_line(log: Path, marker: str) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if marker in line]
    return lines[-1].strip("= ") if lines else ""


ALL = ["py3.11", "prom3", "py3.13", "py3.14", "py3.15", "deps-oldest", "deps-newest", "apps"]
DEFAULT = [leg for leg in ALL if leg != "prom3"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--legs", default="all", help="all, or comma-separated from: " + " ".join(ALL)
    )
    parser.add_argument(
        "--python",
        default=str(REPO / ".venv/bin/python"),
        help="the interpreter (with the test extras) of the host's legs",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments for the py3.11 leg")
    args = parser.parse_args()
    selected = DEFAULT if args.legs == "all" else [leg for leg in args.legs.split(",") if leg]
    unknown = set(selected) - set(ALL)
    if unknown:
        parser.error(f"unknown legs {sorted(unknown)}; choose from {ALL}")

    def interrupted(signum: int, frame: object) -> None:
        _stop.set()
        for child in list(_children):
            stop_group(child)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)

    started = time.monotonic()
    legs = Legs(selected, args.pytest_args, args.python)
    try:
        legs.start()
    except KeyboardInterrupt:
        _stop.set()
        for child in list(_children):
            stop_group(child)
        raise
    finally:
        legs.pool.shutdown(wait=False, cancel_futures=True)
    total = time.monotonic() - started
    print(f"\n{'leg':<12} {'result':<8} {'seconds':>7}  detail")
    for name in selected:
        status, seconds, detail = legs.results.get(name, ("FAILED", 0.0, "did not run"))
        print(f"{name:<12} {status:<8} {seconds:>7.0f}  {first_line(detail)}")
    print(f"{'total':<12} {'':<8} {total:>7.0f}  wall time, legs overlapping; logs in {LOGS}")
    failed = [n for n in selected if legs.results.get(n, ("FAILED",))[0] == "FAILED"]
    for name in failed:
        print(f"\n--- leg {name} FAILED:\n{legs.results.get(name, ('', 0, 'did not run'))[2]}")
    if failed:
        print(f"failed legs: {' '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
