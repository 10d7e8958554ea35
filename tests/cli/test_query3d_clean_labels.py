"""`ccl query3d --clean labels` (the default's first step; ccl.query.relevance.label_support): a selected
Gaussian is kept where the field's training maps had the query's class in at least LABEL_SUPPORT_MIN of
the views that see it. What it is for (bench/selection_quality.py, a training seed of the synthetic
scene): the field drew a stretch of table beside the blue book as the book, though no training map ever
labelled it so (the table has no mask at the finest scale, so nothing taught it otherwise); every view
drew it so, and it touches the book, so neither the votes nor the pieces could tell. Here: the tiny
scene's table Gaussians beside the mug given the mug's code, its maps (a mask per object, from the
ground truth) left as they are. The tiny field's table is drawn in no view, so the stand-in is a part of
the teddy bear given the mug's code: every view draws it as the mug, its maps say "teddy bear"."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bear_drawn_as_mug(tiny_results):
    """(the tiny run's sp field with the 60 teddy-bear Gaussians nearest the mug that the views see
    carrying the mug's code, [G] bool of those, [G] bool of the mug's own Gaussians)."""
    import torch

    from ccl.query.view import gaussian_view_votes
    from ccl.splat.checkpoint import load_language_field

    cats, classes = tiny_results["categories"], tiny_results["classes"]
    mug = cats.index("red mug") + 1
    f = load_language_field(tiny_results["run_dir"] / "gaussians" / "full" / "sp.safetensors")
    xyz = f.gaussians.means.numpy()
    centre = xyz[classes == mug].mean(axis=0)
    seen = gaussian_view_votes(f, _cameras(tiny_results)).seen > 0
    # (the tiny field's table is drawn by no view: its sparse points lie under wide Gaussians)
    bear = np.nonzero((classes == cats.index("teddy bear") + 1) & seen)[0]
    near = bear[np.argsort(np.linalg.norm(xyz[bear] - centre, axis=1))[:60]]
    planted = np.zeros(len(xyz), bool)
    planted[near] = True
    feats = f.features.clone()
    feats[torch.from_numpy(planted)] = f.features[int(np.nonzero(classes == mug)[0][0])]
    return dataclasses.replace(f, features=feats), planted, classes == mug


class _Source:  # a LanguageFieldSource of one field, with the tiny run's training maps
    scales = ("sp",)

    def __init__(self, tiny_results, field):
        from ccl.query.view import language_source

        self._real = language_source(tiny_results["run_dir"], "full", scale="sp")
        self._field = field

    def language_field(self, scale):
        return self._field

    def prototypes(self, scale):
        return self._real.prototypes(scale)

    def training_maps(self, scale):
        return self._real.training_maps(scale)


def _cameras(tiny_results):
    from ccl.query.view import _scene_and_manifest
    from ccl.scene import SceneLoadConfig

    return _scene_and_manifest(tiny_results["scene_dir"], SceneLoadConfig())[1].cameras


def _choose(tiny_results, field, *, clean, rule="views"):
    from ccl.features import FeaturesConfig
    from ccl.query import QueryConfig
    from ccl.query.relevance import text_embeddings
    from ccl.query.view import choose_gaussians

    cameras = _cameras(tiny_results)
    emb = text_embeddings(["red mug"], cfg=QueryConfig(), features_cfg=FeaturesConfig())
    return choose_gaussians(_Source(tiny_results, field), emb, query_cfg=QueryConfig(), rule=rule,
                            cameras=cameras, clean=clean)  # fmt: skip


def test_gaussians_the_field_draws_as_the_mug_where_its_maps_never_had_it_are_dropped(tiny_results, bear_drawn_as_mug):
    field, planted, mug = bear_drawn_as_mug
    raw = _choose(tiny_results, field, clean="none").chosen
    pieces = _choose(tiny_results, field, clean="components").chosen
    # the case is real: the views draw the planted Gaussians as the mug, read as strongly as the mug itself,
    # so neither the votes nor the pieces drop them
    assert raw[planted].sum() >= 10 and pieces[planted].sum() >= 10
    for clean in ("labels", "labels+components"):
        chosen = _choose(tiny_results, field, clean=clean).chosen
        assert not chosen[planted].any(), clean
        assert (chosen & mug).sum() >= 0.95 * (raw & mug).sum() > 0, clean


def test_masks_other_than_those_the_field_was_trained_on_are_refused(tiny_results, tmp_path):
    # the field records the masks file its maps were painted on (train_language's inputs); another run's
    # masks at the same place would paint other maps, so the cleaning refuses them, naming both files
    import shutil

    from ccl.query.view import language_source
    from ccl.splat.checkpoint import load_language_field, save_language_field

    results = tmp_path / "results" / "tiny"
    shutil.copytree(tiny_results["scene_dir"], results)
    path = results / "seed0" / "gaussians" / "full" / "sp.safetensors"
    f = load_language_field(path)
    other = {"path": "/elsewhere/results/tiny/masks/sp.h5", "sha256": "0" * 64}
    save_language_field(path, f, header={**f.header, "inputs": {"masks": other}})
    source = language_source(results / "seed0", "full", scale="sp")
    with pytest.raises(ValueError, match=r"sp\.safetensors was made from another masks file \(/elsewhere/"):
        source.training_maps("sp")


def test_maps_painted_when_asked_count_as_the_maps_held(tiny_results):
    # LanguageFieldSource.training_maps paints a frame when the votes ask for it (one frame in memory at
    # a time); the counts are those of every map held at once, and a Gaussian has a label in at most the
    # views that see it. Under the host tensor guard: what the labels add to the votes makes no tensor
    # off the field's device
    from ccl.host_tensor_guard import host_tensors_fail_on_meeting_the_device
    from ccl.query.view import gaussian_view_votes, language_source

    cameras = _cameras(tiny_results)
    lazy_source = language_source(tiny_results["run_dir"], "full", scale="sp")
    lazy = lazy_source.training_maps("sp")
    held = {name: lazy[name] for name in lazy}
    with host_tensors_fail_on_meeting_the_device():
        a = gaussian_view_votes(lazy_source.language_field("sp"), cameras, maps=lazy)
    b = gaussian_view_votes(language_source(tiny_results["run_dir"], "full", scale="sp").language_field("sp"),
                            cameras, maps=held)  # fmt: skip
    assert a.labels is not None and b.labels is not None and a.labels.sum() > 0
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert (a.labels.sum(axis=1) <= a.seen).all()
