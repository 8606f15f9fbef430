"""``csr gimp``: install, remove and diagnose the GIMP 3 plug-in (Filters > Enhance > CSRNet Retouch)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from csr_core.errors import CsrError
from csr_core.fsutil import atomic_write, write_bytes_atomic
from csr_plugins.gimp import bridge

from .common import device_option, handle_errors, say

PLUGIN_SRC = Path(bridge.__file__).resolve().parent  # plugins/gimp, in a checkout or site-packages
PROJECT_ROOT = PLUGIN_SRC.parents[1]
NAME = "csr_retouch"
FILES = {f"{NAME}/{NAME}.py": 0o755, "bridge.py": 0o644}  # source (under plugins/gimp) -> mode
#: GIMP 3's programs on PATH, as its Linux and macOS builds name them (gimp-3.2 is also gimp-3 and gimp).
GIMP_BINARIES = ("gimp-3", "gimp-3.0", "gimp", "gimp-console-3", "gimp-console-3.0", "gimp-console")
FLATPAK_ID = "org.gimp.GIMP"
#: A Flatpak GIMP's profile, under the home folder (its sandbox's XDG_CONFIG_HOME is ~/.var/app/ID/config).
FLATPAK_PROFILE = Path(".var", "app", FLATPAK_ID, "config", "GIMP", "3.0")
#: What a Flatpak GIMP means for the plug-in, which starts csr's Python as a program of its own.
FLATPAK_SANDBOX = ("a Flatpak GIMP runs plug-ins in its sandbox, where /usr is the Flatpak's, not your system's: "
                   "if the filter says csr's Python is missing or cannot import csr_core, use GIMP 3 from your "
                   "system's packages")


def default_profile() -> Path:
    """$GIMP3_DIRECTORY, else GIMP 3's per-user folder for this platform."""
    if os.environ.get("GIMP3_DIRECTORY"):
        return Path(os.environ["GIMP3_DIRECTORY"]).expanduser()
    return user_profile()


def user_profile() -> Path:
    """GIMP 3's per-user profile folder on this platform."""
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "GIMP" / "3.0"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "GIMP" / "3.0"
    return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "GIMP" / "3.0"


def plugin_dir(profile: Path) -> Path:
    return profile / "plug-ins" / NAME


def missing_profile(profile: Path) -> str | None:
    """Why ``profile`` cannot take the plug-in (GIMP 3 has not made it yet, or a mistyped --profile), else None."""
    if profile.is_dir():
        return None
    return f"profile folder {profile} does not exist (start GIMP 3 once, or pass the right --profile)"


def install(profile: Path, device: str = "cpu") -> Path:
    """Copy the plug-in into ``profile``'s plug-ins folder and record this Python; returns the folder.
    The profile must exist already (GIMP 3 makes it on its first start), as ``diagnose`` requires."""
    why = missing_profile(profile)
    if why:
        raise CsrError(why)
    from csr_core.inference import resolve_device

    resolve_device(device)  # the worker runs in this Python: a device it lacks fails here, not in GIMP
    dest = plugin_dir(profile)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for rel, mode in FILES.items():
            target = dest / Path(rel).name
            write_bytes_atomic(target, (PLUGIN_SRC / rel).read_bytes())
            os.chmod(target, mode)
        config = {"python": sys.executable, "device": device, "protocol": bridge.PROTOCOL}
        if "site-packages" not in PROJECT_ROOT.parts:  # a checkout: make sure the worker imports it
            config["pythonpath"] = str(PROJECT_ROOT)
        with atomic_write(dest / f"{NAME}.json", "w") as fh:
            json.dump(config, fh, indent=2)
    except OSError as exc:
        raise CsrError(f"{dest}: cannot install the GIMP plug-in ({exc.strerror or exc})") from None
    return dest


def check_worker(dest: Path) -> list[str]:
    """Start the worker the way GIMP will, list the styles and retouch a tiny layer with the default one on
    the recorded device (BridgeError -> CsrError)."""
    try:
        with bridge.Worker(str(dest)) as worker:
            reply = worker.ask("styles")[0]
            names = list(reply.get("styles", []))
            if names:
                style = reply.get("default") if reply.get("default") in names else names[0]
                try:
                    worker.ask("retouch", bytes(8 * 8 * 3), width=8, height=8, channels=3, dtype="u8", style=style,
                               strength=1.0)
                except bridge.BridgeError as exc:
                    raise CsrError(f"the GIMP plug-in cannot retouch: {exc}") from None
            return names
    except bridge.BridgeError as exc:
        raise CsrError(f"the GIMP plug-in cannot reach csr: {exc}") from None


@click.group("gimp")
def command() -> None:
    """Set up the GIMP 3 plug-in: Filters > Enhance > CSRNet Retouch."""


class _ProfileOption(click.Option):
    """--profile, whose help names the default folder of the system it runs on."""

    def get_help_record(self, ctx):
        self.help = f"GIMP 3 profile folder [default: GIMP3_DIRECTORY if set, else {user_profile()}]."
        return super().get_help_record(ctx)


_profile = click.option("--profile", cls=_ProfileOption, type=click.Path(file_okay=False, path_type=Path))


@command.command("install")
@_profile
@device_option
@handle_errors
def install_cmd(profile, device):
    """Copy the plug-in into GIMP's plug-ins folder; it will call this Python environment."""
    profile = profile or default_profile()
    advice = flatpak_advice(profile, gimp_version()[0])
    try:
        dest = install(profile, device)
    except CsrError as exc:
        raise CsrError("; ".join([str(exc)] + advice[:-1])) from None  # where the Flatpak GIMP looks, if elsewhere
    names = check_worker(dest)
    try:
        bridge.record_styles(str(dest), names)
    except OSError as exc:
        raise CsrError(f"{dest}: cannot write the plug-in config ({exc.strerror or exc})") from None
    click.echo(f"installed {dest / (NAME + '.py')}\nworker: {sys.executable} ({len(names)} styles: "
               f"{', '.join(names) or 'none yet'})\nrestart GIMP, then use Filters > Enhance > CSRNet Retouch")
    for line in advice:
        say("warning", line)


@command.command("uninstall")
@_profile
@handle_errors
def uninstall_cmd(profile):
    """Remove the plug-in from GIMP's plug-ins folder."""
    dest = plugin_dir(profile or default_profile())
    if not dest.exists():
        click.echo(f"not installed in {dest.parent}")
        return
    try:
        shutil.rmtree(dest)
    except OSError as exc:
        raise CsrError(f"{dest}: cannot remove ({exc.strerror or exc})") from None
    click.echo(f"removed {dest}")


def gimp_candidates(platform: str, environ: Mapping[str, str], root: Path = Path("/")) -> list[Path]:
    """The programs that may be GIMP 3, in the order to try them: those on the PATH, then where GIMP's own
    installers put it on ``platform`` (a ``sys.platform`` value). macOS: the app bundle (GIMP.app, or another
    GIMP*.app) in /Applications and ~/Applications; Windows: the GIMP 3 folder of an install for all users
    (%ProgramFiles%) or for one (%LOCALAPPDATA%\\Programs), its console program first; Linux: the Flatpak's
    launcher (a per-user, then the system installation) and the Snap's. Reads ``environ`` and the files under
    ``root`` (/ but in tests) only: runs nothing."""
    env = {k.upper(): v for k, v in environ.items()} if platform == "win32" else dict(environ)
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    found = [Path(p) for p in (shutil.which(n, path=env.get("PATH", os.defpath)) for n in GIMP_BINARIES) if p]
    if platform == "darwin":
        for apps in (root / "Applications", home / "Applications"):
            others = sorted(b for b in _glob(apps, "GIMP*.app") if b.name != "GIMP.app")
            found += [_first(b / "Contents" / "MacOS", "gimp", "gimp-3", "gimp-3.*")
                      for b in [apps / "GIMP.app"] + others]
    elif platform == "win32":
        bases = [env.get("PROGRAMFILES"), env.get("PROGRAMW6432")]
        bases += [str(Path(env["LOCALAPPDATA"]) / "Programs")] if env.get("LOCALAPPDATA") else []
        found += [_first(Path(base) / "GIMP 3" / "bin", "gimp-console-3.exe", "gimp-console-3.*.exe", "gimp-3.exe",
                         "gimp-3.*.exe") for base in bases if base]
    elif platform.startswith("linux"):
        xdg = env.get("XDG_DATA_HOME", "")
        data = Path(xdg) if os.path.isabs(xdg) else home / ".local" / "share"  # a relative one is ignored (XDG)
        for installation in (data / "flatpak", root / "var" / "lib" / "flatpak"):
            if (installation / "app" / FLATPAK_ID).is_dir():
                found.append(_first(installation / "exports" / "bin", FLATPAK_ID))
        found.append(_first(root / "snap" / "bin", "gimp"))
    unique, programs = [], set()
    for path in found:  # gimp-3 and gimp are often links to one program: asked once (a hung one costs a minute)
        if path is not None and os.path.realpath(path) not in programs:
            unique.append(path)
            programs.add(os.path.realpath(path))
    return unique


def _glob(folder: Path, pattern: str) -> list[Path]:
    return list(folder.glob(pattern)) if folder.is_dir() else []


def _first(folder: Path, *patterns: str) -> Path | None:
    """The first file in ``folder`` that matches one of ``patterns``, in their order (the highest name for a
    wildcard), else None."""
    for pattern in patterns:
        files = sorted(p for p in _glob(folder, pattern) if p.is_file())
        if files:
            return files[-1]
    return None


def is_flatpak(gimp: str | None) -> bool:
    """Whether ``gimp``, as ``gimp_version`` names it, is the Flatpak GIMP."""
    return bool(gimp) and Path(gimp).name.endswith(FLATPAK_ID)


def gimp_version(platform: str | None = None, environ: Mapping[str, str] | None = None,
                 root: Path = Path("/")) -> tuple[str | None, str]:
    """(the first GIMP 3 program found, its version line) or (None, why not); ``gimp_candidates`` says where
    it looks."""
    found = []
    for path in gimp_candidates(platform or sys.platform, os.environ if environ is None else environ, root):
        try:
            out = _version_line(subprocess.run([str(path), "--version"], capture_output=True, text=True,
                                               errors="replace", stdin=subprocess.DEVNULL, timeout=60).stdout)
        except subprocess.TimeoutExpired:
            out = "did not answer --version within 60 s"
        except OSError as exc:
            out = f"does not answer --version ({exc.strerror or exc})"
        if " 3." in f" {out.split('version')[-1]}":
            return str(path), out
        found.append(f"{path}: {out or 'no version'}")
    if shutil.which("flatpak"):  # a Flatpak installation elsewhere than the usual two
        try:
            info = subprocess.run(["flatpak", "info", FLATPAK_ID], capture_output=True, text=True, timeout=60)
            if info.returncode == 0 and "Version: 3." in info.stdout:
                return f"flatpak {FLATPAK_ID}", f"installed as a Flatpak (profile ~/{FLATPAK_PROFILE.as_posix()})"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None, "; ".join(found) or "none on the PATH nor where GIMP's installers put it"


def _version_line(out: str) -> str:
    """What a program printed for --version, as one line: its line that says 'version' (else its first), cut at 100
    characters, anything unprintable shown as '?' (a program that is not GIMP may print anything)."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    line = next((line for line in lines if "version" in line), lines[0] if lines else "")
    return "".join(c if c.isprintable() else "?" for c in line[:100])


def flatpak_advice(profile: Path, gimp: str | None) -> list[str]:
    """What to know when ``gimp`` (as ``gimp_version`` names it) is the Flatpak GIMP: where to install for it,
    unless ``profile`` is that folder already, and what its sandbox means for the filter."""
    if not is_flatpak(gimp):
        return []
    flatpak = Path.home() / FLATPAK_PROFILE
    advice = [] if _same(profile, flatpak) else [
        f"the GIMP 3 found is a Flatpak, whose profile folder is {flatpak}: install there with "
        f"'{bridge.install_command(str(flatpak))}'"]
    return advice + [FLATPAK_SANDBOX]


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are the same existing folder, however written."""
    try:
        return a.is_dir() and b.is_dir() and a.samefile(b)
    except OSError:
        return False


def install_command(profile: Path) -> str:
    """The command that installs into ``profile`` (--profile unless it is the default)."""
    return "csr gimp install" if profile == default_profile() else bridge.install_command(str(profile))


def diagnose(profile: Path) -> list[tuple[str, str]]:
    """(level, line) findings, level 'ok', 'warn' or 'FAIL'."""
    out = []
    dest = plugin_dir(profile)
    script = dest / f"{NAME}.py"
    install = install_command(profile)
    why = missing_profile(profile)
    out.append(("FAIL", why) if why else ("ok", f"profile folder {profile}"))
    gimp, version = gimp_version()
    tail = [("ok", f"{gimp}: {version}") if gimp else ("warn", f"no GIMP 3 found ({version})")]
    tail += [("warn", line) for line in flatpak_advice(profile, gimp)]
    flatpak = Path.home() / FLATPAK_PROFILE
    if not is_flatpak(gimp) and flatpak.is_dir() and not _same(profile, flatpak):  # the same, however written
        out.append(("warn", f"a Flatpak GIMP profile exists at {flatpak}: install there with --profile if "
                            f"that is the GIMP you use"))
    if not script.is_file():
        out.append(("FAIL", f"plug-in {script} is missing: run '{install}'"))
        return out + tail
    out.append(("ok", f"plug-in file {script}"))
    if not os.access(script, os.X_OK):
        out.append(("FAIL", f"{script.name} is not executable: run '{install}' again"))
    first = script.read_bytes().split(b"\n", 1)[0]
    if not (first.startswith(b"#!") and b"python3" in first):
        out.append(("FAIL", f"{script.name} has no python3 shebang (first line {first[:60]!r})"))
    for rel in FILES:
        installed = dest / Path(rel).name
        if not installed.is_file():
            out.append(("FAIL", f"{installed} is missing: run '{install}' again"))
        elif installed.read_bytes() != (PLUGIN_SRC / rel).read_bytes():
            out.append(("warn", f"{installed.name} differs from this csr's copy: run '{install}' again"))
    cfg = bridge.load_config(str(dest))
    if not cfg.get("python"):
        out.append(("FAIL", f"{dest / (NAME + '.json')} is missing or damaged: run '{install}' again"))
    else:
        try:
            names = check_worker(dest)
            out.append(("ok" if names else "warn", f"worker {cfg['python']} imports csr_core ({len(names)} styles: "
                                                   f"{', '.join(names) or 'none: the menu offers only auto'})"))
        except CsrError as exc:
            out.append(("FAIL", str(exc)))
    rc = profile / "pluginrc"
    if rc.is_file() and b"python-fu-csr-retouch" not in rc.read_bytes():
        out.append(("warn", "GIMP has not registered the plug-in yet: restart GIMP (check Error Console)"))
    return out + tail


@command.command("doctor")
@_profile
@handle_errors
def doctor_cmd(profile):
    """Say why GIMP does not list Filters > Enhance > CSRNet Retouch."""
    findings = diagnose(profile or default_profile())
    for level, line in findings:
        click.echo(f"{level:<4}  {line}")
    if any(level == "FAIL" for level, _ in findings):
        sys.exit(1)
