"""ccl view's fast path against its reference: a session that keeps each camera's render (the colour, the
language features drawn in the same pass, the class maps decoded ahead), each field's decoded Gaussians
and each text's embeddings draws the same pixels and selects the same Gaussians as one that renders
every frame anew (`keep_views=False`), through queries, scales, thresholds, camera moves, coarse frames
and a colour or language field swapped in. The field: bench.viewer's (SH degree 3 colours, two language
fields on its geometry with an untrained decoder, so the classes are arbitrary and near ties are many),
small."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

W, H = 96, 72


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """(the fast session, the reference session on the same fields, a query that selects Gaussians)."""
    from bench.viewer import build_session, reference_of

    fast, query = build_session(tmp_path_factory.mktemp("view_cache"), n=4000, size=H)
    ref = reference_of(fast)
    return fast, ref, query


def _cam(k: int):
    from bench.viewer import orbit

    return orbit(k, 7, W, H)


def _same(fast, ref) -> None:
    assert fast.image.shape == (H, W, 3)
    np.testing.assert_array_equal(fast.image, ref.image)
    np.testing.assert_array_equal(fast.colour, ref.colour)
    if ref.heat is None:
        assert fast.heat is None
    else:
        np.testing.assert_array_equal(fast.heat, ref.heat)


def test_queries_on_a_kept_view_draw_what_a_fresh_render_draws(sessions):
    import torch

    from ccl.splat.render import render_channels

    fast, ref, query = sessions
    cam = _cam(1)
    _same(fast.render(cam, prepare="auto"), ref.render(cam))  # the still frame before any query
    assert fast.prepare_classes(cam, "auto")
    kept = fast._views[-1]
    assert kept.features == [None, None] and len(kept.classes) == 2  # both scales decoded, features let go
    for i, lf in enumerate(kept.fields):  # each class map: the decoder's argmax on the drawn features
        with torch.no_grad():
            drawn = render_channels(fast.colour, cam, rgb=False, features=lf.features).colors[0]
            np.testing.assert_array_equal(kept.classes[i], lf.decoder(drawn).argmax(dim=-1).numpy())
    for text, scale, threshold in [(query, "auto", None), ("phrase 3", "auto", 0.3),
                                   (f"{query}; phrase 9", "auto", 0.5), (query, "wp", 0.4),
                                   (query, "sp", None), (query, "auto", 0.6)]:  # fmt: skip
        a, b = (
            fast.ask(text, scale=scale, threshold=threshold),
            ref.ask(text, scale=scale, threshold=threshold),
        )
        assert a.message == b.message
        np.testing.assert_array_equal(a.chosen.chosen, b.chosen.chosen)
        np.testing.assert_array_equal(a.chosen.selection.relevance, b.chosen.selection.relevance)
        got = fast.render(cam, a)
        assert fast._views[-1] is kept  # the kept render reused (another scale's fields added to it)
        assert not got.coarse
        _same(got, ref.render(cam, b))
        _same(fast.render(cam, a, class_stride=2), ref.render(cam, b))  # decoded in full already


def test_moved_camera_coarse_frame_and_first_query_without_preparing(sessions):
    fast, ref, query = sessions
    a, b = fast.ask(query), ref.ask(query)
    for k in (2, 3):
        cam = _cam(k)
        coarse = fast.render(cam, a, class_stride=2)
        assert coarse.coarse
        _same(coarse, ref.render(cam, b, class_stride=2))
        _same(fast.render(cam, a), ref.render(cam, b))  # refined once still
    back = fast.render(_cam(2), a, class_stride=2)  # back at a kept view: its full class maps drawn
    assert not back.coarse
    _same(back, ref.render(_cam(2), b))
    cam = _cam(4)
    _same(fast.render(cam), ref.render(cam))  # colour alone, no features drawn
    _same(fast.render(cam, a), ref.render(cam, b))  # the query drawn with its features anew


def test_prepare_stopped_midway_and_fields_swapped_in(sessions):
    fast, ref, query = sessions
    cam = _cam(5)
    fast.render(cam, prepare="auto")
    calls = []
    assert not fast.prepare_classes(cam, "auto", cancelled=lambda: calls.append(1) or len(calls) > 1)
    a, b = fast.ask(query), ref.ask(query)
    _same(fast.render(cam, a), ref.render(cam, b))

    # a newer colour checkpoint: the kept renders are of the old field and are not shown
    before, old = fast.render(cam, a), fast.colour
    try:
        newer = dataclasses.replace(old, sh0=old.sh0.flip(0))
        fast.colour = ref.colour = newer
        changed = fast.render(cam, a)
        assert not np.array_equal(changed.colour, before.colour)
        _same(changed, ref.render(cam, b))
    finally:
        fast.colour = ref.colour = old

    # a newer language field of sp (another object, its features changed): decoded anew for the view
    # and for the Gaussians
    src_f, src_r = fast.sources["sp"], ref.sources["sp"]
    lf = src_f.language_field("sp")
    try:
        newer = dataclasses.replace(lf, features=lf.features.roll(1, dims=0))
        src_f._fields["sp"] = src_r._fields["sp"] = newer
        a, b = fast.ask(query, scale="sp"), ref.ask(query, scale="sp")
        np.testing.assert_array_equal(a.chosen.chosen, b.chosen.chosen)
        _same(fast.render(cam, a), ref.render(cam, b))
    finally:
        src_f._fields["sp"] = src_r._fields["sp"] = lf


def test_a_field_of_another_geometry_is_rendered_once_per_view(sessions, monkeypatch):
    from ccl.splat import render

    fast, ref, query = sessions
    src_f, src_r = fast.sources["wp"], ref.sources["wp"]
    lf = src_f.language_field("wp")
    g = lf.gaussians
    moved = dataclasses.replace(lf, gaussians=dataclasses.replace(g, means=g.means + 0.01))
    calls = []
    real = render.render_class_map
    monkeypatch.setattr(render, "render_class_map", lambda *a, **k: calls.append(1) or real(*a, **k))
    try:
        src_f._fields["wp"] = src_r._fields["wp"] = moved
        cam = _cam(6)
        for text in (query, "phrase 3", query):
            a, b = fast.ask(text, scale="wp"), ref.ask(text, scale="wp")
            _same(fast.render(cam, a), ref.render(cam, b))
        assert len(calls) == 1 + 3  # the kept view's once, the reference's every frame
    finally:
        src_f._fields["wp"] = src_r._fields["wp"] = lf


def test_fields_swapped_in_on_a_still_camera_are_let_go(sessions):
    """A view kept while one field's newer checkpoints land (a live view at rest) holds at most
    KEPT_FIELDS fields; a newer colour field lets go of the views of the one before."""
    from ccl.view.session import KEPT_FIELDS

    fast, ref, query = sessions
    cam = _cam(0)
    src_f, src_r = fast.sources["auto"], ref.sources["auto"]
    lf = src_f.language_field("sp")
    try:
        for k in range(1, 2 * KEPT_FIELDS):
            newer = dataclasses.replace(lf, features=lf.features.roll(k, dims=0))
            src_f._fields["sp"] = src_r._fields["sp"] = newer
            _same(fast.render(cam, fast.ask(query)), ref.render(cam, ref.ask(query)))
            assert all(len(v.fields) <= KEPT_FIELDS for v in fast._views)
    finally:
        src_f._fields["sp"] = src_r._fields["sp"] = lf
    old = fast.colour
    try:
        fast.colour = ref.colour = dataclasses.replace(old, sh0=old.sh0 * 0.5)
        _same(fast.render(cam), ref.render(cam))
        assert len(fast._views) == 1 and fast._views[0].colour is fast.colour
    finally:
        fast.colour = ref.colour = old
