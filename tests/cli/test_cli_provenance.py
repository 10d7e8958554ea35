"""The CLI reads a results folder by what made it: the text encoder is the scene's own (its features
files'), never the current directory's config; a field and a codebook of different runs are refused."""

from __future__ import annotations

import re
import shutil

import yaml

from ccl.cli import main


def _selected(out: str) -> str:
    return re.search(r"scale \w+, ([\d.]+)% of pixels selected", out).group(1)


def test_query_embeds_text_with_the_scenes_features_model_not_the_directorys_config(
    tiny_results, tmp_path, capsys, monkeypatch
):
    scene = str(tiny_results["scene_dir"])
    assert main(["query", scene, "red mug", "--frame", "0", "-o", str(tmp_path / "a.png")]) == 0
    expected = _selected(capsys.readouterr().out)
    assert float(expected) > 0
    # another run's config.yaml in the current directory: another simulated text model
    other = {"scenes": {"s": {"source": "synthetic"}}, "features": {"sim_anchor_seed": 7}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(other))
    monkeypatch.chdir(tmp_path)
    assert main(["query", scene, "red mug", "--frame", "0", "-o", str(tmp_path / "b.png")]) == 0
    assert _selected(capsys.readouterr().out) == expected


def test_an_explicit_config_with_other_features_settings_is_refused(tiny_results, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text(
        yaml.safe_dump({"scenes": {"s": {"source": "synthetic"}}, "features": {"sim_anchor_seed": 7}})
    )
    scene = str(tiny_results["scene_dir"])
    for argv in (
        ["query", scene, "red mug", "--frame", "0", "-o", str(tmp_path / "x.png"), "--config", str(other)],
        ["query3d", scene, "red mug", "-o", str(tmp_path / "x.ply"), "--config", str(other)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{other}: its features settings {{'sim_anchor_seed': 7}}" in err
        assert "'sim_anchor_seed': 0" in err and "features" in err and "drop --config" in err
        assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.ply").exists()


def test_a_field_trained_on_another_codebook_is_refused_naming_both(tiny_results, tmp_path, capsys):
    from ccl.splat.checkpoint import load_language_field, save_language_field

    scene = tmp_path / "tiny"
    shutil.copytree(tiny_results["scene_dir"], scene)
    field_path = scene / "seed0" / "gaussians" / "full" / "sp.safetensors"
    field = load_language_field(field_path)
    header = {**field.header, "inputs": {"codebook": "0" * 64}}  # the sha256 of another run's codebook
    save_language_field(field_path, field, header=header)
    for argv in (
        ["query", str(scene), "red mug", "--frame", "0", "--scale", "sp", "-o", str(tmp_path / "x.png")],
        ["query3d", str(scene), "red mug", "--scale", "sp", "-o", str(tmp_path / "x.ply")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{field_path} was made from another codebook, sha256 000000000000…, not from" in err
        assert str(scene / "seed0" / "codebook" / "full" / "sp.h5") in err
