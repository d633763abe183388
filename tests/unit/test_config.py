from pathlib import Path

import pytest

from bertdemo.config import Settings, packaged_model_path


def test_defaults_use_packaged_model_and_sqlite_in_data_dir(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.model_source == packaged_model_path()
    assert Path(s.model_source, "config.json").exists()
    assert s.database_url == f"sqlite:///{tmp_path / 'bertdemo.sqlite3'}"
    assert s.labels == ("negative", "neutral", "positive")


def test_from_env_reads_every_variable(tmp_path):
    s = Settings.from_env({
        "BERTDEMO_MODEL": "bert-base-uncased", "BERTDEMO_DATA_DIR": str(tmp_path),
        "BERTDEMO_DB_URL": "postgresql://u@localhost/db", "BERTDEMO_LABELS": "bad, good",
        "BERTDEMO_MAX_LENGTH": "256", "BERTDEMO_DEVICE": "CPU", "BERTDEMO_BOOTSTRAP": "0",
        "BERTDEMO_MAX_UPLOAD_MB": "5", "BERTDEMO_INITIAL_EPOCHS": "0.5", "BERTDEMO_MAX_CSV_ROWS": "500",
    })
    assert s.model_source == "bert-base-uncased"
    assert s.data_dir == tmp_path.resolve()
    assert s.database_url == "postgresql://u@localhost/db"
    assert s.labels == ("bad", "good")
    assert (s.max_length, s.device, s.bootstrap, s.max_upload_mb, s.initial_epochs) == (256, "cpu", False, 5.0, 0.5)
    assert s.max_csv_rows == 500


def test_empty_environment_gives_defaults():
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("env, fragment", [
    ({"BERTDEMO_MAX_LENGTH": "lots"}, "BERTDEMO_MAX_LENGTH must be a int, got 'lots'"),
    ({"BERTDEMO_MAX_LENGTH": "4"}, "max_length must be in [8, 512], got 4"),
    ({"BERTDEMO_DEVICE": "tpu"}, "device must be one of"),
    ({"BERTDEMO_MAX_CSV_ROWS": "0"}, "max_csv_rows must be positive, got 0"),
    ({"BERTDEMO_LABELS": "only"}, "labels must be at least two"),
    ({"BERTDEMO_LABELS": "a,a"}, "labels must be at least two distinct"),
])
def test_bad_values_are_refused_with_the_value(env, fragment):
    with pytest.raises(ValueError, match=None) as info:
        Settings.from_env(env)
    assert fragment in str(info.value)


def test_lease_minutes_from_the_environment():
    from bertdemo.config import Settings

    assert Settings.from_env({"BERTDEMO_LEASE_MINUTES": "0.5"}).lease_minutes == 0.5
    for bad in ("0", "-1", "100000"):
        with pytest.raises(ValueError, match="lease_minutes must be in"):
            Settings.from_env({"BERTDEMO_LEASE_MINUTES": bad})


def test_the_quick_model_refits_every_20_labels_unless_told_otherwise():
    assert Settings().quick_refit_every == 20
    assert Settings.from_env({"BERTDEMO_QUICK_REFIT_EVERY": "0"}).quick_refit_every == 0  # off
    assert Settings.from_env({"BERTDEMO_QUICK_REFIT_EVERY": "50"}).quick_refit_every == 50
    with pytest.raises(ValueError, match="quick_refit_every must be in"):
        Settings.from_env({"BERTDEMO_QUICK_REFIT_EVERY": "-1"})
    with pytest.raises(ValueError, match="BERTDEMO_QUICK_REFIT_EVERY must be a int, got 'x'"):
        Settings.from_env({"BERTDEMO_QUICK_REFIT_EVERY": "x"})


def test_the_quick_retrain_replay_and_the_map_cap_come_from_the_environment():
    assert (Settings().quick_retrain_replay, Settings().map_points) == (2000, 50_000)
    got = Settings.from_env({"BERTDEMO_QUICK_RETRAIN_REPLAY": "0", "BERTDEMO_MAP_POINTS": "1000"})
    assert (got.quick_retrain_replay, got.map_points) == (0, 1000)  # 0: the changed labels alone
    with pytest.raises(ValueError, match="quick_retrain_replay must be in"):
        Settings.from_env({"BERTDEMO_QUICK_RETRAIN_REPLAY": "-5"})
    with pytest.raises(ValueError, match="map_points must be in"):
        Settings.from_env({"BERTDEMO_MAP_POINTS": "999"})


def test_the_stopping_signals_settings_come_from_the_environment():
    assert (Settings().stop_pool_size, Settings().stop_kappa, Settings().stop_window) == (1000, 0.99, 3)
    got = Settings.from_env({"BERTDEMO_STOP_POOL": "500", "BERTDEMO_STOP_KAPPA": "0.95", "BERTDEMO_STOP_WINDOW": "2"})
    assert (got.stop_pool_size, got.stop_kappa, got.stop_window) == (500, 0.95, 2)
    for env, fragment in [({"BERTDEMO_STOP_POOL": "5"}, "stop_pool_size must be in [10, 100000], got 5"),
                          ({"BERTDEMO_STOP_KAPPA": "1.5"}, "stop_kappa must be in (0, 1], got 1.5"),
                          ({"BERTDEMO_STOP_WINDOW": "0"}, "stop_window must be in [1, 100], got 0"),
                          ({"BERTDEMO_STOP_KAPPA": "high"}, "BERTDEMO_STOP_KAPPA must be a float, got 'high'")]:
        with pytest.raises(ValueError) as exc:
            Settings.from_env(env)
        assert fragment in str(exc.value)


def test_which_bundled_datasets_are_imported():
    assert Settings().datasets == ("airline", "general")
    assert Settings.from_env({"BERTDEMO_DATASETS": "airline"}).datasets == ("airline",)
    assert Settings.from_env({"BERTDEMO_DATASETS": " Airline , general "}).datasets == ("airline", "general")
    with pytest.raises(ValueError, match="datasets must name some of"):
        Settings.from_env({"BERTDEMO_DATASETS": "airline,sports"})


@pytest.mark.parametrize(("env", "shared"), [
    ({}, False),  # python app.py: Gradio listens on 127.0.0.1
    ({"GRADIO_SERVER_NAME": "127.0.0.1"}, False),
    ({"GRADIO_SERVER_NAME": "localhost"}, False),
    ({"GRADIO_SERVER_NAME": "::1"}, False),
    ({"GRADIO_SERVER_NAME": "0.0.0.0"}, True),  # every interface: others can reach it
    ({"GRADIO_SERVER_NAME": "10.1.2.3"}, True),
    ({"GRADIO_SERVER_NAME": "myhost.example"}, True),  # a name may resolve to anything
    ({"SPACE_ID": "team/bertdemo"}, True),  # a Hugging Face Space
    ({"SPACE_ID": "team/bertdemo", "BERTDEMO_SHARED": "0"}, False),  # said explicitly
    ({"GRADIO_SERVER_NAME": "127.0.0.1", "BERTDEMO_SHARED": "1"}, True),  # e.g. behind a proxy
    ({"GRADIO_SERVER_NAME": "0.0.0.0", "BERTDEMO_SHARED": "auto"}, True),
])
def test_whether_the_link_is_shared(env, shared):
    assert Settings.from_env(env).shared_link is shared


def test_the_host_of_bertdemo_serve_decides_too():
    assert Settings.from_env({}).with_(server_name="0.0.0.0").shared_link


def test_the_admin_password_is_read_kept_out_of_repr_and_must_be_long():
    s = Settings.from_env({"BERTDEMO_ADMIN_PASSWORD": "a long admin secret"})
    assert s.admin_password == "a long admin secret" and "secret" not in repr(s)
    with pytest.raises(ValueError, match="at least 12 characters"):
        Settings.from_env({"BERTDEMO_ADMIN_PASSWORD": "short"})
