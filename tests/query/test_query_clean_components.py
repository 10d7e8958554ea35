"""`ccl query3d --clean components` (ccl.query.components, ccl.query.view.clean_selection): a piece of a
3D selection that lies apart from its main body and is read more weakly than it, averaged over the
scales, is dropped; the object's own Gaussians, and a second copy of the object read as strongly, are
kept. The constructed case is what bench/selection_quality.py found on the synthetic scene: at one
scale another object (the cube) is drawn with the query's class ("tea in a glass"), at the other scale
it is drawn as itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ccl.query import QueryConfig, from_arrays
from ccl.query.components import keep_supported_components, voxel_components


def _blob(centre, n, rng, spread=0.02):
    return np.asarray(centre, np.float64) + rng.uniform(-spread, spread, size=(n, 3))


def test_voxel_components_link_touching_voxels_only():
    # voxels of edge 1: cells (0,0,0) and (1,1,1) touch at a corner; (3,0,0) is two cells away
    xyz = np.array([[0.5, 0.5, 0.5], [1.5, 1.5, 1.5], [3.5, 0.5, 0.5], [0.2, 0.9, 0.1]])
    label = voxel_components(xyz, 1.0)
    assert label[0] == label[1] == label[3] and label[2] != label[0]
    assert sorted(set(label.tolist())) == [0, 1]
    # a chain of touching cells is one piece however long; a gap of one empty cell splits it
    chain = np.c_[np.arange(20) + 0.5, np.zeros(20), np.zeros(20)]
    assert len(set(voxel_components(chain, 1.0).tolist())) == 1
    gapped = np.delete(chain, 10, axis=0)
    assert len(set(voxel_components(gapped, 1.0).tolist())) == 2
    # pieces far apart (1e9 voxels) are numbered without overflow; the gaps between them do not make
    # voxels two apart touch, nor split touching ones
    far = np.array([[0.5, 0, 0], [1e9, 0, 0], [1e9 + 1, 0, 0], [1e9 + 3, 0, 0], [2e9, 0, 0]])
    lab = voxel_components(far, 1.0)
    assert lab[1] == lab[2] and len(set(lab.tolist())) == 4
    assert voxel_components(np.zeros((0, 3)), 1.0).shape == (0,)
    with pytest.raises(ValueError, match="voxel"):
        voxel_components(xyz, 0.0)


def test_a_weakly_read_piece_apart_is_dropped_an_equal_one_kept():
    rng = np.random.default_rng(0)
    body, stray, twin = _blob([0, 0, 0], 300, rng), _blob([1, 0, 0], 40, rng), _blob([0, 1, 0], 200, rng)
    other = _blob([0, 0, 1], 100, rng)  # not selected
    xyz = np.concatenate([body, stray, twin, other])
    part = np.repeat([0, 1, 2, 3], [300, 40, 200, 100])
    support = np.choose(part, [0.7, 0.4, 0.7, 0.9])
    selected = part != 3
    kept = keep_supported_components(selected, xyz, support, voxel=0.05)
    assert kept[part == 0].all() and kept[part == 2].all()  # the object, and a second one read as much
    assert not kept[part == 1].any()  # 0.4 < 0.8 × 0.7
    assert not kept[part == 3].any()  # never selected, never added
    # the stray joined to the body (a bridge of selected Gaussians) is part of it, and kept
    bridge = np.c_[np.linspace(0.02, 0.98, 40), np.zeros(40), np.zeros(40)]
    kept2 = keep_supported_components(
        np.r_[selected, np.ones(40, bool)], np.r_[xyz, bridge], np.r_[support, np.full(40, 0.7)], voxel=0.05
    )
    assert kept2[: len(xyz)][part == 1].all()
    # the main body is the piece holding the most support: a small, strongly read piece does not win
    small = keep_supported_components(selected, xyz, np.choose(part, [0.7, 0.95, 0.7, 0.0]), voxel=0.05)
    assert small[part == 0].all() and small[part == 1].all()  # 0.95 >= 0.8 × 0.7
    assert not keep_supported_components(np.zeros(len(xyz), bool), xyz, support, voxel=0.05).any()
    with pytest.raises(ValueError, match="lengths differ"):
        keep_supported_components(selected[:-1], xyz, support, voxel=0.05)


class _Source:
    """A LanguageFieldSource of hand-made fields: per scale, the Gaussians (shared), each Gaussian's
    class (rule "own" through choose_gaussians' `classes`) and the prototypes."""

    def __init__(self, gaussians, classes, prototypes):
        self.scales = tuple(classes)
        self._fields = {s: SimpleNamespace(gaussians=gaussians, cls=classes[s]) for s in self.scales}
        self._protos = prototypes

    def language_field(self, s):
        return self._fields[s]

    def prototypes(self, s):
        return self._protos[s]


@pytest.fixture
def tea_and_cube():
    """The glass (class 0 at both scales), the cube (class 0, tea's, at wp; class 1, the cube's, at sp)
    and the table (class 2), far apart; wp's tea prototype the text itself, so wp is the scale read."""
    import torch

    rng = np.random.default_rng(1)
    xyz = np.concatenate(
        [_blob([0, 0, 0], 200, rng), _blob([0.6, 0, 0], 150, rng), _blob([0, 0, -0.5], 80, rng)]
    )
    part = np.repeat([0, 1, 2], [200, 150, 80])
    gaussians = SimpleNamespace(
        means=torch.from_numpy(xyz.astype(np.float32)),
        log_scales=torch.full((len(xyz), 3), float(np.log(0.01))),
        opacity_logits=torch.full((len(xyz),), 3.0),
    )
    eye = np.eye(8, dtype=np.float32)
    cfg = QueryConfig(negatives=("object", "things"))
    emb = from_arrays(["tea in a glass"], eye[:1], eye[5:7], cfg=cfg)
    tea_sp = eye[0] + 0.3 * eye[3]  # read a little less surely at sp
    protos = {"wp": eye[[0, 1, 2]], "sp": np.stack([tea_sp, eye[1], eye[2]])}
    classes = {"wp": np.choose(part, [0, 0, 2]), "sp": np.choose(part, [0, 1, 2])}
    return _Source(gaussians, classes, protos), emb, cfg, part


def _choose(source, emb, cfg, clean, **kw):
    from ccl.query.view import choose_gaussians

    return choose_gaussians(
        source, emb, query_cfg=cfg, rule="own", classes=lambda f: f.cls, clean=clean, **kw
    )


def test_the_cube_drawn_as_tea_at_one_scale_is_dropped_the_glass_kept(tea_and_cube):
    source, emb, cfg, part = tea_and_cube
    raw = _choose(source, emb, cfg, "none")
    assert raw.scale == "wp" and raw.chosen[part <= 1].all() and not raw.chosen[part == 2].any()
    clean = _choose(source, emb, cfg, "components")
    assert clean.scale == "wp" and clean.clean == "components"
    assert clean.chosen[part == 0].all()  # the glass: every Gaussian kept
    assert not clean.chosen[part >= 1].any()  # the cube: drawn as the cube at sp
    assert clean.n_cleaned == int((part == 1).sum()) and raw.n_cleaned == 0
    # the cleaning keeps what min_opacity left out, out
    faint = _choose(source, emb, cfg, "components", min_opacity=0.99)
    assert not faint.chosen.any()


def test_a_single_scale_reads_both_pieces_alike_and_keeps_them(tea_and_cube):
    source, emb, cfg, part = tea_and_cube
    only_wp = _Source(source.language_field("wp").gaussians, {"wp": source.language_field("wp").cls},
                      {"wp": source.prototypes("wp")})  # fmt: skip
    chosen = _choose(only_wp, emb, cfg, "components")
    assert chosen.chosen[part <= 1].all()  # nothing tells the cube from the glass at wp alone
    # a field of the other scale on other Gaussians (moved) says nothing about these: not averaged in
    g = source.language_field("wp").gaussians
    moved = SimpleNamespace(means=g.means + 1.0, log_scales=g.log_scales, opacity_logits=g.opacity_logits)
    apart = _Source(
        g, {"wp": source.language_field("wp").cls, "sp": source.language_field("sp").cls}, source._protos
    )
    apart._fields["sp"] = SimpleNamespace(gaussians=moved, cls=source.language_field("sp").cls)
    assert _choose(apart, emb, cfg, "components").chosen[part <= 1].all()


def test_an_unknown_clean_is_refused_naming_the_choices(tea_and_cube):
    source, emb, cfg, _ = tea_and_cube
    with pytest.raises(ValueError, match="--clean tidy: unknown; accepted: labels\\+components .*; labels .*; components .*; none "):
        _choose(source, emb, cfg, "tidy")
