"""Messages name the config file the run was given (the Snakefile exports it to every job as
CCL_CONFIG_SOURCE), not config.yaml, when a benchmark's config is the one to fix."""

from __future__ import annotations

import pytest

from ccl.config import CONFIG_SOURCE_ENV

SOURCE = "configs/lerf_ovs.yaml"


@pytest.fixture
def benchmark_config(monkeypatch):
    monkeypatch.setenv(CONFIG_SOURCE_ENV, SOURCE)


def test_a_bad_stage_value_names_the_runs_config(benchmark_config):
    from ccl.codebook.config import CodebookConfig

    with pytest.raises(ValueError) as e:
        CodebookConfig(n_prototypes=1)
    assert str(e.value).endswith(f"fix the `codebook` section of {SOURCE}"), e.value
    assert "config.yaml" not in str(e.value)


def test_a_bad_device_names_the_runs_config(benchmark_config):
    from ccl.device import resolve_device

    with pytest.raises(ValueError) as e:
        resolve_device("tpu")
    assert str(e.value).startswith(f"{SOURCE}: device must be one of"), e.value


def test_a_vocab_tree_matcher_without_a_tree_names_the_runs_config(benchmark_config):
    from ccl.sfm.config import SfmConfig, check_vocab_tree

    with pytest.raises(ValueError) as e:
        check_vocab_tree(SfmConfig(matcher="vocab_tree"))
    assert f"fix the `sfm` section of {SOURCE}" in str(e.value), e.value


def test_the_sim_backend_on_a_real_scene_names_the_runs_config(benchmark_config, tmp_path):
    from types import SimpleNamespace

    from ccl.masks.backends.sim import check
    from ccl.masks.config import MasksConfig

    scene = SimpleNamespace(root=tmp_path, name="teatime")  # a real scene: no gt.h5
    with pytest.raises(ValueError) as e:
        check(MasksConfig(), scene)
    assert f"masks.sam_checkpoint in {SOURCE}" in str(e.value), e.value


def test_outside_a_run_messages_name_config_yaml(monkeypatch):
    from ccl.codebook.config import CodebookConfig

    monkeypatch.delenv(CONFIG_SOURCE_ENV, raising=False)
    with pytest.raises(ValueError, match=r"section of config\.yaml$"):
        CodebookConfig(n_prototypes=1)
