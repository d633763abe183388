"""Backup, verify and restore a data directory: the database and the model versions it registers,
with a manifest of checksums.

`create` runs while the app runs: the SQLite database is copied with SQLite's online backup API
(one consistent snapshot; label saves go on meanwhile), then the folder of every version that
snapshot registers (complete by construction: the registry renames a folder into place before it
registers it). A PostgreSQL database is not copied here: its dump is `pg_dump` (see
docs/operations.md), and the backup holds the model versions and says so in its manifest.
`verify` checks every file against the manifest and the database's integrity without restoring.
`restore` verifies, then puts the database and the versions into the configured data directory
(the app stopped); version folders are stored relative to the data directory, so it serves at once.

Layout of a backup folder:
    manifest.json        format, time, bertdemo version, database kind and revision, versions,
                         and every file's size and sha256
    bertdemo.sqlite3     the database (SQLite only)
    models/<name>/...    each registered version's folder
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo import __version__
from bertdemo.config import Settings
from bertdemo.db import versions
from bertdemo.db.engine import make_engine, read_only_engine, sqlite_backup, sqlite_integrity, sqlite_path
from bertdemo.db.migrate import current_revision
from bertdemo.db.models import now
from bertdemo.errors import BadInput
from bertdemo.training.files import fsync_tree, version_folder
from bertdemo.validate import short

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "bertdemo.sqlite3"
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # one folder name under models/


@dataclass(frozen=True)
class BackupReport:
    path: Path
    files: int
    bytes: int
    versions: tuple[str, ...]
    database: str  # "sqlite" (included) or the dialect of a database that is not (postgresql)
    seconds: float
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        db = "the database" if self.database == "sqlite" else f"no database ({self.database}: use pg_dump)"
        return (f"Backup at {self.path}: {db}, {len(self.versions)} model version(s) "
                f"({', '.join(self.versions) or 'none'}), {self.files} files, {self.bytes / 2**20:.1f} MB, "
                f"{self.seconds:.1f} s.")


@dataclass(frozen=True)
class Verification:
    path: Path
    problems: list[str] = field(default_factory=list)
    checked: int = 0  # files whose checksum was compared

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _registered(engine: Engine) -> tuple[list[tuple[str, str, bool]], str | None]:
    """(name, stored path, active) of every version in the database, and its revision."""
    try:
        with Session(engine) as s:
            rows = [(v.name, v.path, v.is_active) for v in versions.list_versions(s)]
        with engine.connect() as conn:
            return rows, current_revision(conn)
    finally:
        engine.dispose()


def create(settings: Settings, dest: str | Path) -> BackupReport:
    """Back up the data directory of `settings` into the new folder `dest` (see the module docstring)."""
    t0 = time.perf_counter()
    dest = Path(dest).expanduser().resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInput(f"{dest} exists and is not an empty folder; choose a new folder for the backup.")
    if settings.data_dir == dest or settings.data_dir in dest.parents:
        raise BadInput(f"The backup folder {dest} is inside the data directory {settings.data_dir}; "
                       "choose one outside.")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    warnings: list[str] = []
    try:
        url = settings.database_url
        if sqlite_path(url) is not None:
            sqlite_backup(url, tmp / DATABASE)
            rows, revision = _registered(read_only_engine(tmp / DATABASE))  # the snapshot's versions, not later ones
            kind = "sqlite"
        else:
            rows, revision = _registered(make_engine(url))
            kind = url.split(":", 1)[0].split("+", 1)[0]
            warnings.append(f"The database ({kind}) is not in this backup: dump it with pg_dump at the same time "
                            "(docs/operations.md, 'Backup and restore').")
        names = []
        for name, stored, _active in rows:
            folder = version_folder(settings.data_dir, stored)
            if not folder.is_dir():
                warnings.append(f"Version {name}'s folder {folder} is missing; it is not in the backup.")
                continue
            # the int8 graph is left out: it is rebuilt from the weights when the version is served
            shutil.copytree(folder, tmp / "models" / name, ignore=shutil.ignore_patterns("int8", ".int8-*"))
            names.append(name)
        files = {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "format": FORMAT, "created_at": now().isoformat(timespec="seconds") + "Z", "bertdemo": __version__,
            "source": str(settings.data_dir),
            "database": {"kind": kind, "included": kind == "sqlite", "file": DATABASE if kind == "sqlite" else None,
                         "revision": revision},
            "versions": [{"name": n, "stored_path": p, "active": a, "in_backup": n in names} for n, p, a in rows],
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        fsync_tree(tmp)
        if dest.exists():  # an empty folder the caller made
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for w in warnings:
        log.warning("%s", w)
    report = BackupReport(dest, len(files), sum(f["bytes"] for f in files.values()), tuple(names), kind,
                          time.perf_counter() - t0, tuple(warnings))
    log.info("%s", report.summary())
    return report


def verify(src: str | Path) -> Verification:
    """Check a backup without restoring it: the manifest, every file's size and checksum, the
    database's integrity, and a folder for every version the manifest lists as backed up."""
    src = Path(src).expanduser().resolve()
    manifest_path = src / MANIFEST
    if not manifest_path.is_file():
        return Verification(src, [f"{src} has no {MANIFEST}: it is not a bertdemo backup."])
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Verification(src, [f"{MANIFEST} is not valid JSON: {exc}"])
    if manifest.get("format") != FORMAT:
        return Verification(src, [f"unknown backup format {manifest.get('format')!r} (this bertdemo reads {FORMAT})"])
    problems = _unsafe_entries(src, manifest)
    if problems:  # a path that leaves the backup or a link: read nothing it names
        return Verification(src, problems)
    listed = manifest.get("files", {})
    for rel, meta in listed.items():
        path = src / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != meta["bytes"]:
            problems.append(f"{rel} has {path.stat().st_size:,} bytes; the manifest says {meta['bytes']:,}")
        elif sha256(path) != meta["sha256"]:
            problems.append(f"{rel} does not match its checksum (changed or damaged)")
    extra = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()
             and p.relative_to(src).as_posix() not in listed and p.name != MANIFEST]
    problems += [f"{rel} is not in the manifest" for rel in sorted(extra)]
    db = manifest.get("database", {})
    if db.get("included") and (src / DATABASE).is_file() and not any(DATABASE in p for p in problems):
        result = sqlite_integrity(src / DATABASE)
        if result != "ok":
            problems.append(f"the database fails SQLite's integrity check: {result}")
    for v in manifest.get("versions", []):
        if v.get("in_backup") and not (src / "models" / v["name"] / "config.json").is_file():
            problems.append(f"version {v['name']} is listed but its folder is not complete")
    return Verification(src, problems, checked=len(listed))


def _inside(src: Path, rel: object) -> bool:
    """`rel` is a relative path that stays inside `src` once resolved (no "..", no absolute path,
    no link on the way out)."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or "\\" in rel:
        return False
    return (src / rel).resolve().is_relative_to(src)


def _unsafe_entries(src: Path, manifest: dict) -> list[str]:
    """What makes a backup unsafe to read or restore: a manifest path outside the backup folder, a
    version name that is not one folder name, or a symbolic link anywhere in the folder (a restore
    would copy what it points to, e.g. /etc/hostname, into the data directory)."""
    problems = [f"the manifest names {short(rel)}, a path outside the backup folder"
                for rel in manifest.get("files", {}) if not _inside(src, rel)]
    problems += [f"the manifest names a version {short(v.get('name'))}: a version name is one folder name (v1, v2, ...)"
                 for v in manifest.get("versions", []) if not VERSION_NAME.fullmatch(str(v.get("name", "")))]
    problems += [f"{p.relative_to(src).as_posix()} is a symbolic link; a backup holds plain files only"
                 for p in sorted(src.rglob("*")) if p.is_symlink()]
    return problems


def restore(src: str | Path, settings: Settings, force: bool = False) -> str:
    """Verify `src`, then restore it into the data directory of `settings` (stop the app first).
    An existing database or models folder there is refused unless `force`, which first moves the
    data directory's contents and the database files aside, into `<data dir>.before-restore-<time>`
    (nothing is deleted). Returns a summary."""
    check = verify(src)
    if not check.ok:
        raise BadInput("The backup does not verify, nothing was restored: " + "; ".join(check.problems[:10]))
    src = check.path
    manifest = json.loads((src / MANIFEST).read_text())
    target = settings.data_dir
    db_file = sqlite_path(settings.database_url)
    included = manifest["database"]["included"]
    if included and db_file is None:
        raise BadInput("The backup holds a SQLite database, but BERTDEMO_DB_URL names another database; unset it "
                       "to restore into the data directory, or load the data into that database yourself.")
    # what a restore replaces: the models folder, and the database with its -wal/-shm files (the
    # database may live outside the data directory, BERTDEMO_DB_URL=sqlite:////elsewhere/x.sqlite3)
    db_files = [] if db_file is None else [db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")]
    in_the_way = [p for p in [target / "models", *db_files] if p.exists()]
    moved = None
    if in_the_way:
        if not force:
            raise BadInput(f"{target} already holds a database or model versions; stop the app and pass --force to "
                           "move them aside and restore.")
        # the contents move, not the folder itself: the data directory may be a mount point
        moved = target.with_name(f"{target.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
        moved.mkdir(parents=True)
        inside = list(target.iterdir()) if target.is_dir() else []
        for path in [*inside, *(p for p in db_files if p.exists() and target not in p.parents)]:
            shutil.move(path, moved / path.name)
        log.warning("restore: the previous data directory's contents are at %s", moved)
    try:
        target.mkdir(parents=True, exist_ok=True)
        if (src / "models").is_dir():
            shutil.copytree(src / "models", target / "models", symlinks=True)  # verify refused any link
        if included:
            db_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / DATABASE, db_file)
    except BaseException:
        log.error("restore failed part-way; %s", f"the previous data is at {moved}" if moved else "nothing was moved")
        raise
    names = [v["name"] for v in manifest["versions"] if v["in_backup"]]
    outside = [v["name"] for v in manifest["versions"] if v["in_backup"] and Path(v["stored_path"]).is_absolute()]
    if included and outside:  # folders that lived outside the data directory are inside it now
        engine = make_engine(settings.database_url)
        try:
            with Session(engine) as s, s.begin():
                for name in outside:
                    versions.set_path(s, name, f"models/{name}")
        finally:
            engine.dispose()
    fsync_tree(target)
    summary = (f"Restored {'the database and ' if included else ''}{len(names)} model version(s) "
               f"({', '.join(names) or 'none'}) from {src} into {target}.")
    if moved is not None:
        summary += f" The previous data directory is at {moved}."
    if not included:
        summary += " Restore the database with pg_restore (docs/operations.md)."
    log.info("%s", summary)
    return summary
