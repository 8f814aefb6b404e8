"""Pictures legible at the sizes kcnn makes them: learning curves, overlays and seed bands for 1,
2 and 60 epochs, feature maps of a 1×1 layer, a Grad-CAM too coarse to mean much; and report.html
showing settings as a person writes them.

Checked through matplotlib's own objects (axes, limits, ticks, legend placement, texts and their
boxes once drawn), never through pixel hashes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.text import Text

from kcnn.runs import html, plots

EPOCHS = (1, 2, 60)
STAMPED = [  # folder names as `kcnn compare` labels runs: long, time-stamped, alike
    "20261201-004412-lenet5-mnist-5k-sequential",
    "20261201-004501-lenet5-mnist-5k-functional",
    "20261201-004555-lenet5-mnist-5k-subclassed",
]


def _history(epochs: int, rate: float = 0.001, varying: bool = False, shift: float = 0.0):
    e = np.arange(epochs, dtype=float)
    rates = rate * 0.5 ** (e // 10) if varying else np.full(epochs, np.float32(rate), float)
    return {
        "loss": list(1.5 * np.exp(-e / 10) + 0.1 + shift),
        "accuracy": list(0.5 + 0.45 * (1 - np.exp(-e / 10)) - shift),
        "val_loss": list(1.6 * np.exp(-e / 10) + 0.15 + shift),
        "val_accuracy": list(0.48 + 0.44 * (1 - np.exp(-e / 10)) - shift),
        "learning_rate": [float(r) for r in rates],
    }


@pytest.fixture
def drawn():
    """Draw a figure (inside kcnn's literal-text settings, as kcnn saves it) so every text has
    its box; the figure is closed after the test."""
    made = []

    def draw(fig):
        made.append(fig)
        with plots.literal_text():
            fig.canvas.draw()
        return fig

    yield draw
    import matplotlib.pyplot as plt

    for fig in made:
        plt.close(fig)


def _texts(fig) -> list[str]:
    """Every text of the figure, its line breaks as spaces."""
    return [" ".join(t.get_text().split()) for t in fig.findobj(Text) if t.get_text()]


def _box(artist, fig):
    return artist.get_window_extent(fig.canvas.get_renderer())


def _shown_ticks(axis) -> list:
    low, high = sorted(axis.get_view_interval())
    return [t for t in axis.get_major_ticks() if low <= t.get_loc() <= high and t.label1.get_text()]


def _assert_no_overlaps(fig) -> None:
    """Within each panel: no axis label over its tick labels, no two tick labels over each other."""
    for ax in fig.axes:
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            labels = [t.label1 for t in _shown_ticks(axis)]
            boxes = [_box(t, fig) for t in labels]
            for (a, ta), (b, tb) in itertools.combinations(zip(boxes, labels, strict=True), 2):
                assert not a.overlaps(b), f"{name} ticks {ta.get_text()} and {tb.get_text()}"
            if axis.label.get_text():
                title = _box(axis.label, fig)
                for box, tick in zip(boxes, labels, strict=True):
                    assert not title.overlaps(box), f"{axis.label.get_text()} over {tick}"
            assert axis.get_offset_text().get_text() == "", "an offset/exponent above the ticks"


def _assert_legend_outside_the_data(fig) -> None:
    assert not any(ax.get_legend() for ax in fig.axes), "a legend inside a panel"
    assert len(fig.legends) == 1
    legend = _box(fig.legends[0], fig)
    for ax in fig.axes:
        assert not legend.overlaps(_box(ax.patch, fig)), "the legend covers a panel"


def _panel(fig, ylabel: str):
    return next(ax for ax in fig.axes if ax.get_ylabel() == ylabel)


@pytest.mark.parametrize("epochs", EPOCHS)
def test_curves_read_right_for_one_two_and_sixty_epochs(drawn, epochs):
    fig = drawn(plots.curves_figure({"": _history(epochs)}, "lenet5 (sequential) on digits"))
    # a constant rate is a fact for the title, not a panel of one flat line
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert "learning rate 0.001" in fig.get_suptitle()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert low < 1 and high > epochs and low > 0 and high - low <= epochs + 2.5
        ticks = [t.get_loc() for t in _shown_ticks(ax.xaxis)]
        assert ticks and all(float(t).is_integer() for t in ticks)  # whole epochs only
        for line in ax.get_lines():
            assert line.get_marker() not in ("None", "", None)  # one epoch is a visible dot
    accuracy = _panel(fig, "accuracy")
    bottom, top = accuracy.get_ylim()
    assert 0 <= bottom and top <= 1.02
    if epochs == 1:  # one value: an axis a few hundredths wide around it, one tick at epoch 1
        assert 0.03 <= top - bottom <= 0.1 and bottom < 0.5 < top
        assert [t.get_loc() for t in _shown_ticks(accuracy.xaxis)] == [1]
    if epochs == 60:  # markers on a dozen epochs, not on sixty
        assert all(line.get_markevery() > 1 for line in accuracy.get_lines())
    assert _panel(fig, "loss").get_ylim()[0] >= 0
    _assert_legend_outside_the_data(fig)
    assert set(fig.legends[0].get_texts()[i].get_text() for i in range(2)) == {
        "train",
        "validation",
    }
    _assert_no_overlaps(fig)


@pytest.mark.parametrize("epochs", EPOCHS)
def test_a_changing_rate_gets_a_panel_with_plain_ticks(drawn, epochs):
    fig = drawn(plots.curves_figure({"": _history(epochs, varying=True)}))
    if epochs < 11:  # halved every ten epochs: the first ten are one rate
        assert len(fig.axes) == 2 and "learning rate 0.001" in fig.get_suptitle()
        return
    rate = _panel(fig, "learning rate")
    labels = [t.label1.get_text() for t in _shown_ticks(rate.yaxis)]
    assert labels and all(len(s) <= 6 for s in labels), labels  # 0.001, not 0.00096 and 1e-3
    assert "learning rate" not in fig.get_suptitle()
    _assert_no_overlaps(fig)


@pytest.mark.parametrize("epochs", EPOCHS)
def test_overlays_of_long_names_keep_the_legend_off_the_curves(drawn, epochs):
    histories = {name: _history(epochs, shift=0.01 * i) for i, name in enumerate(STAMPED)}
    fig = drawn(plots.curves_figure(histories, "lenet5 on mnist-5k: three forms"))
    _assert_legend_outside_the_data(fig)
    entries = [t.get_text() for t in fig.legends[0].get_texts()]
    # each run once (its colour and marker), the time stamps dropped, then the line styles
    assert entries == [
        "lenet5-mnist-5k-sequential",
        "lenet5-mnist-5k-functional",
        "lenet5-mnist-5k-subclassed",
        "train",
        "validation",
    ]
    assert "learning rate 0.001" in fig.get_suptitle()
    _assert_no_overlaps(fig)


def test_runs_with_different_constant_rates_say_each_rate_in_the_legend(drawn):
    histories = {"a": _history(5, rate=0.01), "b": _history(5, rate=0.001)}
    fig = drawn(plots.curves_figure(histories))
    assert len(fig.axes) == 2
    entries = [t.get_text() for t in fig.legends[0].get_texts()]
    assert entries[:2] == ["a (learning rate 0.01)", "b (learning rate 0.001)"]


def test_short_names_keep_names_that_would_collide():
    assert plots.short_names(STAMPED[:2]) == [
        "lenet5-mnist-5k-sequential",
        "lenet5-mnist-5k-functional",
    ]
    same = ["20261201-004412-lenet5", "20261201-005000-lenet5"]
    assert plots.short_names(same) == same  # stripped they would be one name twice


@pytest.mark.parametrize("epochs", EPOCHS)
def test_seed_bands_read_right_for_one_two_and_sixty_epochs(drawn, epochs):
    groups = {
        "lr=0.01": [_history(epochs, shift=0.01 * s) for s in range(3)],
        "lr=0.001": [_history(epochs, shift=0.02 * s) for s in range(3)],
    }
    fig = drawn(plots.band_figure(groups, "two rates, three seeds"))
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert low < 1 and high > epochs and low > 0
    _assert_legend_outside_the_data(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == [
        "lr=0.01 (n=3)",
        "lr=0.001 (n=3)",
    ]
    _assert_no_overlaps(fig)


def test_pictures_are_written_for_one_epoch(tmp_path):
    assert plots.curves(_history(1), tmp_path / "curves.png", "one epoch")
    assert plots.overlay_curves(
        {n: _history(1) for n in STAMPED}, tmp_path / "overlay.png", "one epoch"
    )
    for name in ("curves.png", "overlay.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


# --- inside the network -------------------------------------------------------------------------


def _loaded(model, shape, classes=("a", "b", "c")):
    from kcnn.runs.browse import RunInfo
    from kcnn.use.predict import LoadedRun

    info = RunInfo(folder=None, config={"classes": list(classes)}, metrics=None)
    return LoadedRun(info, model, shape, shape, lambda x: np.asarray(x, np.float32) / 255.0)


def _image(shape):
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def test_a_one_by_one_feature_map_is_one_strip_of_its_channels(drawn):
    """LeNet-5's C5 is 1×1×120: one value per channel, drawn as one strip of all 120, not as 16
    squares of one colour each."""
    from kcnn.models import forms
    from kcnn.use import visualize

    shape = (32, 32, 1)
    loaded = _loaded(forms.build("lenet5", "sequential", shape, 10), shape, "0123456789")
    fig, stages = visualize.feature_maps_figure(loaded, _image(shape), "test image 0 of digits")
    drawn(fig)
    assert "test image 0 of digits" in fig.get_suptitle()
    rows = {}
    for ax in fig.axes:
        row = ax.get_subplotspec().rowspan.start
        rows.setdefault(row, []).append(ax)
    assert len(rows) == len(stages) == 3
    spatial, one = rows[0], rows[2]
    assert len(spatial) == 6  # C1's six channels, one picture each
    assert len(one) == 1, "a 1×1 map drawn as one strip"
    (strip,) = one
    assert strip.get_subplotspec().colspan.stop - strip.get_subplotspec().colspan.start > 1
    (picture,) = strip.get_images()
    assert picture.get_array().shape == (1, 120)
    assert np.ptp(picture.get_array()) > 0  # the channels differ: not one colour
    assert "1×1×120" in strip.get_title(loc="left")


def test_grad_cam_too_coarse_to_mean_much_says_so(drawn):
    """A network whose last map is 2×2 (VGG16 at 32×32) gets a note on the picture; LeNet-5's
    10×10 map at 32×32 does not."""
    import keras

    from kcnn.models import forms
    from kcnn.use import visualize

    coarse = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, strides=4, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    fig, shown = visualize.grad_cam_figure(_loaded(coarse, (8, 8, 1)), _image((8, 8, 1)), "x.png")
    drawn(fig)
    assert shown["map"] == [2, 2] and "too coarse" in shown["note"]
    assert any("only 2×2" in t and "too coarse" in t for t in _texts(fig))
    assert "x.png" in _texts(fig)  # which image it shows
    shape = (32, 32, 1)
    lenet = _loaded(forms.build("lenet5", "sequential", shape, 10), shape, "0123456789")
    fig, shown = visualize.grad_cam_figure(lenet, _image(shape))
    drawn(fig)
    assert "note" not in shown and not any("too coarse" in t for t in _texts(fig))


# --- report.html: settings as a person writes them ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        (
            "split_sizes",
            {"train": 3200, "val": 800, "test": 1000},
            "train 3,200 · val 800 · test 1,000",
        ),
        ("device_names", ["/device:CPU:0"], "CPU"),
        (
            "device_names",
            ["/job:localhost/replica:0/task:0/device:GPU:0", "/device:GPU:1"],
            "GPU 0, GPU 1",
        ),
        ("limit", None, "—"),
        ("data_dir", "", "—"),
        ("input_shape", [32, 32, 1], "32×32×1"),
        ("seeds", [1, 2, 3], "1, 2, 3"),
        ("seed", 1000003, "1000003"),
        ("lr", 0.0010000000474974513, "0.001"),
        ("mixed_precision", False, "no"),
        ("dataset_provenance", {"asked": "mnist", "fallback": True}, "asked mnist · fallback yes"),
    ],
)
def test_settings_read_as_a_person_writes_them(key, value, shown):
    assert html.readable(value, key) == shown
    page = html._pairs({key: value})
    assert f"<td>{shown}</td>" in page and "{" not in page and "None" not in page


def test_an_experiment_files_comparison_is_titled_by_the_file(tmp_path, cli):
    """Two runs of one model from a file: the comparison says which file, not `lenet5 on digits`,
    and opens with the file's own description, escaped."""
    path = tmp_path / "two-rates.toml"
    out = tmp_path / "runs"
    run = f'command = "train"\narch = "lenet5"\ndataset = "digits"\nepochs = 1\nlimit = 60\nout = "{out}"\n'
    runs = "".join(f"[[run]]\n{run}lr = {rate}\n" for rate in (0.01, 0.001))
    path.write_text(f'description = "Two <rates> | one model"\n{runs}')
    r = cli("run", path)
    assert r.code == 0, r.err
    (folder,) = out.glob("*-compare-two-rates")
    md = (folder / "comparison.md").read_text()
    assert md.startswith("# experiment two-rates.toml\n")
    page = (folder / "report.html").read_text()
    assert "<title>experiment two-rates.toml</title>" in page
    assert "Two &lt;rates&gt; | one model" in page and "<rates>" not in page
