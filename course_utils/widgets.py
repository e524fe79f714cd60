"""Interactive explorers (ipywidgets 8) for the paper's Figs. 2, 5 and 7.

* :func:`deconvnet_explorer`: pick a layer, a feature map (channel) and an image; see the
  top-k deconvnet projections of that feature map over the dataset beside their image
  patches, and the chosen image's own projection (Fig. 2).
* :func:`occlusion_explorer`: move a grey occluder over an image; see P(true class) and the
  five most probable classes (Fig. 7).
* :func:`invariance_explorer`: pick a transformation and slide its amount; see the
  transformed image and, with the current amount marked, the feature distances at layer 1
  and layer 7 and P(true class) (Fig. 5).

Each explorer is an ``ipywidgets.VBox`` (a subclass of :class:`Explorer`): instructions, the
controls (also attributes, e.g. ``explorer.channel``; ``explorer.controls`` maps the names to
them), the pictures (``ipywidgets.Image`` holding PNG bytes) and captions (``ipywidgets.HTML``),
and an ``Output`` where a failed redraw shows its traceback. The redraw is wired with
``ipywidgets.interactive_output``; sliders whose redraw costs more than a forward pass of
one image have ``continuous_update=False``. Setting a control's ``value`` from Python redraws
synchronously, so tests (and notebooks) can drive the explorers without a browser.
``explorer.last_update_seconds`` is the wall time of the latest redraw
(``time.perf_counter``).

Heavy work happens once: the deconvnet explorer mines the top activations of all its layers
in one pass when it is built (changing the channel then only projects ``k`` units); the
invariance explorer computes the curves of every transformation for all its images when it is
built.
"""

from __future__ import annotations

import html
import io
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

from .activations import TopK, mine_top_activations, receptive_field, receptive_field_box
from .checks import check_eval_mode, check_fill, check_images, check_positive_int
from .data import ImageTensorDataset
from .deconvnet import project, project_top_activations
from .display import MOSAIC_GAP, display_scale, mosaic, normalize_projection, receptive_field_window, to_pixels
from .invariance import AMOUNT_LABELS, TRANSFORMATIONS, InvarianceCurves, invariance_curves, transform_images
from .layers import get_layer, layer_outputs
from .occlusion import occlude
from .progress import progress_bar

__all__ = [
    "MOSAIC_CELL_PIXELS",
    "DEFAULT_AMOUNTS",
    "Explorer",
    "DeconvnetExplorer",
    "OcclusionExplorer",
    "InvarianceExplorer",
    "deconvnet_explorer",
    "occlusion_explorer",
    "invariance_explorer",
]

#: Mosaic cells (receptive-field windows) are enlarged to about this many pixels.
MOSAIC_CELL_PIXELS = 96
#: Amounts the invariance explorer offers per transformation (pixels, factor, degrees).
DEFAULT_AMOUNTS: dict[str, tuple[float, ...]] = {
    "translate": tuple(float(a) for a in range(-16, 17, 2)),
    "scale": tuple(round(0.6 + 0.1 * i, 1) for i in range(11)),
    "rotate": tuple(float(a) for a in range(-180, 181, 15)),
}
#: Colour of the occluder outline, the receptive-field box and the marker on the curves.
_HIGHLIGHT = (230, 25, 75)


# --------------------------------------------------------------------------------------------
# Pictures as PNG bytes
# --------------------------------------------------------------------------------------------


def _mosaic_png(pictures: Sequence[Tensor], columns: int, scale: int) -> bytes:
    """PNG of same-sized ``(3, h, w)`` pictures in rows of ``columns``, each enlarged by ``scale``."""
    return _png(mosaic([to_pixels(picture, scale) for picture in pictures], columns, gap=MOSAIC_GAP))


def _png(pixels: np.ndarray, boxes: Sequence[tuple[int, int, int, int]] = (), scale: int = 1) -> bytes:
    """PNG bytes of ``(H, W, 3)`` uint8 ``pixels`` with the outline of each ``(top, left,
    bottom, right)`` box (in picture pixels before the ``scale`` enlargement; bottom/right exclusive)."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for top, left, bottom, right in boxes:
        draw.rectangle(
            (left * scale, top * scale, right * scale - 1, bottom * scale - 1),
            outline=_HIGHLIGHT,
            width=max(1, scale // 2),
        )
    return _png_bytes(image)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


_PICTURE_GAP = 8


def _views(children: Sequence[widgets.Widget], caption: str = "") -> Iterator[tuple[str, widgets.Widget]]:
    """``(caption, widget)`` for every Image and HTML widget under ``children`` in display order;
    an HTML widget directly followed by an Image is that Image's caption."""
    children = list(children)
    for index, child in enumerate(children):
        following = children[index + 1] if index + 1 < len(children) else None
        if isinstance(child, widgets.HTML) and isinstance(following, widgets.Image):
            continue
        if isinstance(child, widgets.Image):
            previous = children[index - 1] if index else None
            yield (_html_lines(previous.value)[0] if isinstance(previous, widgets.HTML) else caption), child
        elif isinstance(child, widgets.HTML):
            yield caption, child
        elif isinstance(child, widgets.Box):
            yield from _views(child.children, caption)


def _html_lines(markup: str) -> list[str]:
    """The text of an HTML snippet, one line per ``<br>`` or table row, cells separated by spaces."""
    markup = re.sub(r"<br\s*/?>|</tr>|</p>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", " ", markup))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line] or [""]


def _captioned(caption: str, view: widgets.Widget) -> widgets.VBox:
    return widgets.VBox([widgets.HTML(f"<b>{html.escape(caption)}</b>"), view])


# --------------------------------------------------------------------------------------------
# The common frame
# --------------------------------------------------------------------------------------------


class Explorer(widgets.VBox):
    """Instructions, controls, views and an error ``Output``; redraws when a control changes.

    Subclasses build their state and views, then call :meth:`_connect` with their controls;
    ``interactive_output`` then calls :meth:`_draw` with the controls' values (once right away,
    then on every change). A control whose range depends on another (the channel slider on the
    layer) is adjusted inside :meth:`_adjusting`, so the adjustment triggers no extra redraw.

    Attributes:
        controls: ``{name: widget}``, in display order; the same widgets are attributes.
        messages: the ``Output`` of ``interactive_output`` (tracebacks of failed redraws).
        last_update_seconds: wall time of the latest redraw in seconds.
    """

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, widgets.ValueWidget] = {}
        self.last_update_seconds = float("nan")
        self._adjusting_depth = 0

    def _connect(
        self, instructions: str, controls: dict[str, widgets.ValueWidget], views: Sequence[widgets.Widget]
    ) -> None:
        self.controls = controls
        self.messages = widgets.interactive_output(self._timed_draw, controls)
        self.children = (
            widgets.HTML(instructions),
            widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")),
            *views,
            self.messages,
        )

    @contextmanager
    def _adjusting(self) -> Iterator[None]:
        """Change control ranges without redrawing for each intermediate value."""
        self._adjusting_depth += 1
        try:
            yield
        finally:
            self._adjusting_depth -= 1

    def _timed_draw(self, **values: Any) -> None:
        if self._adjusting_depth:
            return
        start = time.perf_counter()
        self._draw(**values)
        self.last_update_seconds = time.perf_counter() - start

    def picture(self) -> bytes:
        """PNG bytes of the explorer as it is now, for pages where widgets cannot run (the course
        site): a line of control values, the pictures side by side under their captions, and the
        text readouts below them."""
        pictures: list[tuple[str, Image.Image]] = []
        readouts: list[str] = []
        for caption, widget in _views(self.children[2:-1]):
            if isinstance(widget, widgets.Image) and widget.value:
                pictures.append((caption, Image.open(io.BytesIO(widget.value)).convert("RGB")))
            elif isinstance(widget, widgets.HTML) and widget.value:
                readouts.extend(_html_lines(widget.value))
        font = ImageFont.load_default(size=14)
        line = 20
        header = "   ".join(f"{name}: {control.value}" for name, control in self.controls.items())
        text_width = max(font.getlength(text) for text in [header, *readouts])
        width = (
            int(max(sum(image.width for _, image in pictures) + _PICTURE_GAP * len(pictures), text_width))
            + 2 * _PICTURE_GAP
        )
        tallest = max((image.height for _, image in pictures), default=0)
        height = line * (2 + len(readouts)) + tallest + 2 * _PICTURE_GAP
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        draw.text((_PICTURE_GAP, 2), header, fill="black", font=font)
        left = _PICTURE_GAP
        for caption, image in pictures:
            draw.text((left, line + 2), caption, fill="black", font=font)
            canvas.paste(image, (left, 2 * line))
            left += image.width + _PICTURE_GAP
        top = 2 * line + tallest + _PICTURE_GAP
        for number, text in enumerate(readouts):
            draw.text((_PICTURE_GAP, top + number * line), text, fill="black", font=font)
        return _png_bytes(canvas)

    #: Each explorer draws its view from the current control values (keyword arguments).
    _draw: Callable[..., None]


def _check_model_and_data(model: nn.Module, dataset: ImageTensorDataset) -> None:
    if not isinstance(dataset, ImageTensorDataset):
        raise TypeError(
            f"dataset must be a course_utils.data.ImageTensorDataset (e.g. load_dataset('embedded', 'val')), "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError("dataset is empty; the explorers need at least one image")
    check_eval_mode(model)
    first = _normalized(model, dataset, [0])
    check_images(model, first)
    try:
        with torch.no_grad():
            logits = model(first)
    except RuntimeError as error:
        raise ValueError(
            f"the model cannot take this dataset's {tuple(first.shape[1:])} images ({error}); use images of the "
            "size the model was built for (e.g. ZFNet(image_size=...))"
        ) from error
    if logits.ndim != 2 or int(dataset.labels.max()) >= logits.shape[1]:
        raise ValueError(
            f"the model must return (N, num_classes) logits covering the dataset's labels 0..{int(dataset.labels.max())}, "
            f"got output shape {tuple(logits.shape)}"
        )


def _normalized(model: nn.Module, dataset: ImageTensorDataset, indices: Sequence[int] | Tensor) -> Tensor:
    """``dataset``'s images ``indices`` normalized, ``(n, 3, H, W)`` with the model's dtype and device."""
    images = dataset.normalize(dataset.images[torch.as_tensor(indices, dtype=torch.long)])
    parameter = next(model.parameters(), None)
    return images if parameter is None else images.to(device=parameter.device, dtype=parameter.dtype)


def _image_slider(dataset: ImageTensorDataset, value: int) -> widgets.IntSlider:
    if not 0 <= value < len(dataset):
        raise ValueError(
            f"image index {value} is out of range: the dataset has {len(dataset)} images (0..{len(dataset) - 1})"
        )
    return widgets.IntSlider(value=value, min=0, max=len(dataset) - 1, description="image", continuous_update=False)


def _class_name(dataset: ImageTensorDataset, label: int) -> str:
    return dataset.class_names[label] if label < len(dataset.class_names) else f"class {label}"


# --------------------------------------------------------------------------------------------
# Fig. 2: top-k projections
# --------------------------------------------------------------------------------------------


class DeconvnetExplorer(Explorer):
    """Top-k deconvnet projections of one feature map, and one image's own projection.

    Controls: ``layer`` (Dropdown), ``channel`` and ``image`` (IntSliders; the channel's range
    follows the layer). Views: ``projection_view`` (the ``k`` projections, strongest first, left
    to right, each cut to the unit's receptive-field window and shown with
    :func:`~course_utils.display.normalize_projection`), ``patch_view`` (the image patches in the same
    order), ``image_view`` (the chosen image, its strongest unit's receptive field outlined),
    ``image_projection_view`` (that unit's projection, whole image) and ``caption``.

    Built by :func:`deconvnet_explorer`, or directly from ``tops``, ``{layer: TopK}`` that
    :func:`~course_utils.activations.mine_top_activations` found over the same ``dataset``.

    Attributes:
        tops: ``{layer: TopK}``, the layers offered (mined once).
        projections: ``(k, 3, H, W)`` projections of the selected channel's top-k units.
        image_projection: ``(3, H, W)`` projection of the chosen image's strongest unit.
        image_unit: ``(y, x, activation)`` of that unit in the layer's output.
        scale: enlargement factor of the mosaics (each cell is the receptive-field window,
            ``S x S`` pixels, shown ``S * scale`` wide, :data:`MOSAIC_GAP` pixels apart).
    """

    def __init__(
        self, model: nn.Module, dataset: ImageTensorDataset, tops: Mapping[str, TopK], channel: int = 0, image: int = 0
    ) -> None:
        super().__init__()
        if not tops:
            raise ValueError("tops is empty; mine at least one layer with mine_top_activations(model, dataset, layers)")
        self.model, self.dataset, self.tops = model, dataset, dict(tops)
        first_layer = next(iter(self.tops))
        num_channels = self.tops[first_layer].values.shape[0]
        if not 0 <= channel < num_channels:
            raise ValueError(f"channel {channel} is out of range: layer {first_layer!r} has {num_channels} channels")
        self.layer = widgets.Dropdown(options=list(self.tops), value=first_layer, description="layer")
        self.channel = widgets.IntSlider(
            value=channel, min=0, max=num_channels - 1, description="channel", continuous_update=False
        )
        self.image = _image_slider(dataset, image)
        self.layer.observe(self._follow_layer, names="value")
        self.projection_view, self.patch_view = widgets.Image(format="png"), widgets.Image(format="png")
        self.image_view, self.image_projection_view = widgets.Image(format="png"), widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.projections = torch.empty(0)
        self.image_projection = torch.empty(0)
        self.image_unit = (0, 0, 0.0)
        self.scale = 1
        k = self.tops[first_layer].k
        self._connect(
            "<b>Deconvnet explorer</b> (Fig. 2). Choose a layer and a feature map (channel): left, "
            f"the deconvnet projections of its {k} strongest activations over the dataset, strongest "
            "first (grey = 0, brighter = positive); next, the image patches that caused them. Choose "
            "an image to see where this feature map responds most in it (box) and that unit's projection.",
            {"layer": self.layer, "channel": self.channel, "image": self.image},
            [
                widgets.HBox(
                    [
                        _captioned(f"top-{k} projections", self.projection_view),
                        _captioned("image patches", self.patch_view),
                    ]
                ),
                widgets.HBox(
                    [
                        _captioned("chosen image", self.image_view),
                        _captioned("its projection", self.image_projection_view),
                    ]
                ),
                self.caption,
            ],
        )

    def _follow_layer(self, change: dict[str, Any]) -> None:
        with self._adjusting():
            self.channel.max = self.tops[change["new"]].values.shape[0] - 1

    def _draw(self, layer: str, channel: int, image: int) -> None:
        top, model, dataset = self.tops[layer], self.model, self.dataset
        self.projections = project_top_activations(model, dataset, top, [channel])[0]
        displayed = normalize_projection(self.projections)
        windows, patches = [], []
        for j in range(top.k):
            y, x = (int(v) for v in top.locations[channel, j])
            windows.append(receptive_field_window(model, layer, displayed[j], y, x))
            patches.append(
                receptive_field_window(model, layer, dataset.images[int(top.image_indices[channel, j])], y, x)
            )
        columns = math.ceil(math.sqrt(top.k))
        self.scale = display_scale(windows[0].shape[-1], MOSAIC_CELL_PIXELS)
        self.projection_view.value = _mosaic_png(windows, columns, self.scale)
        self.patch_view.value = _mosaic_png(patches, columns, self.scale)

        chosen = _normalized(model, dataset, [image])
        feature_map = layer_outputs(model, chosen, [layer])[layer][0, channel]
        y, x = divmod(int(feature_map.argmax()), feature_map.shape[-1])
        activation = float(feature_map[y, x])
        self.image_unit = (y, x, activation)
        self.image_projection = project(model, chosen, layer, torch.tensor([[0, channel, y, x]]))[0]
        scale = display_scale(dataset.images.shape[-1])
        box = receptive_field_box(model, layer, y, x, dataset.images.shape[-2:])
        self.image_view.value = _png(to_pixels(dataset.images[image], scale), [box], scale)
        self.image_projection_view.value = _png(to_pixels(normalize_projection(self.image_projection), scale))
        strongest = ", ".join(f"{float(v):.2f}" for v in top.values[channel])
        absent = " (not positive: this image does not excite the feature map)" if activation <= 0 else ""
        label = int(dataset.labels[image])
        self.caption.value = (
            f"{html.escape(layer)}, feature map {channel}: top-{top.k} activations {strongest}.<br>"
            f"image {image} ({html.escape(_class_name(dataset, label))}): strongest unit at (y={y}, x={x}), "
            f"activation {activation:.2f}{absent}; receptive field "
            f"{receptive_field(model, layer)[0]} pixels."
        )


def _conv_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_children() if isinstance(module, nn.Conv2d)]


def deconvnet_explorer(
    model: nn.Module,
    dataset: ImageTensorDataset,
    layers: Sequence[str] | None = None,
    k: int | None = None,
    channel: int = 0,
    image: int = 0,
    progress: bool = True,
) -> DeconvnetExplorer:
    """Explore the top-``k`` projections of every feature map of ``layers`` (Fig. 2).

    Args:
        model: a flat named model in eval mode (e.g. a trained :class:`~course_utils.models.ZFNet`).
        dataset: the images mined over and shown (e.g. ``load_dataset("embedded", "val")``).
        layers: layers with a spatial receptive field; default: every ``nn.Conv2d`` (conv1..conv5).
        k: activations per feature map (default 9, as in the paper, or every image of a
            smaller dataset such as the 7 sample photos).
        channel, image: the initial feature map and image index.
        progress: show a progress bar while mining.

    Returns:
        A :class:`DeconvnetExplorer`. Building it mines all ``layers`` in one pass over the
        dataset; afterwards a change of channel or image projects only ``k + 1`` units.
    """
    _check_model_and_data(model, dataset)
    layers = _conv_layers(model) if layers is None else list(layers)
    if not layers:
        raise ValueError("give at least one layer, e.g. layers=['conv1', 'conv5']")
    for layer in layers:
        receptive_field(model, layer)  # raises for unknown layers and layers without a spatial field
    k = min(9, len(dataset)) if k is None else k
    tops = mine_top_activations(model, dataset, layers, k=k, progress=progress)
    return DeconvnetExplorer(model, dataset, tops, channel=channel, image=image)


# --------------------------------------------------------------------------------------------
# Fig. 7: occlusion
# --------------------------------------------------------------------------------------------


class OcclusionExplorer(Explorer):
    """A grey occluder moved over one image: P(true class) and the five most probable classes.

    Controls: ``image``, ``window`` (occluder side), ``y`` (top row) and ``x`` (left column), all
    IntSliders; the occluder lies inside the image, so the ranges of ``y`` and ``x`` follow
    ``window``. A position ``(y, x)`` is the occluder with top-left corner there
    (:func:`~course_utils.occlusion.occlude`), the same grid as
    :func:`~course_utils.occlusion.occlusion_map` with stride 1. One redraw is one forward pass.

    Views: ``image_view`` (the occluded image the model sees, occluder outlined),
    ``probability_label`` (P(true class), occluded and clean) and ``top_classes_view`` (bars).

    Args:
        model: a classifier in eval mode returning ``(N, num_classes)`` logits.
        dataset: the images to choose from; their labels are the true classes.
        image: the initial image index.
        window: occluder side in pixels (default: a quarter of the image side); the occluder
            starts in the middle of the image.
        fill: occluder value in normalized units (0 = the dataset mean, the paper's grey
            square), a float or 3 per-channel values.

    Attributes:
        probabilities: ``(num_classes,)`` softmax of the occluded image.
        clean_probabilities: ``(num_classes,)`` softmax of the image without occluder.
        target: the image's label, the class whose probability is shown.
        occluded: ``(3, H, W)`` the normalized occluded image.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: ImageTensorDataset,
        image: int = 0,
        window: int | None = None,
        fill: float | Sequence[float] = 0.0,
    ) -> None:
        _check_model_and_data(model, dataset)
        super().__init__()
        self.model, self.dataset = model, dataset
        height, width = dataset.images.shape[-2:]
        window = min(height, width) // 4 if window is None else check_positive_int(window, "window", "occluder side")
        if window > min(height, width):
            raise ValueError(
                f"window must be at most {min(height, width)} (the image is {height}x{width}), got {window}"
            )
        self.fill = check_fill(fill, "fill").float()
        self.image = _image_slider(dataset, image)
        self.window = widgets.IntSlider(value=window, min=1, max=min(height, width), description="window")
        self.y = widgets.IntSlider(value=(height - window) // 2, min=0, max=height - window, description="top (y)")
        self.x = widgets.IntSlider(value=(width - window) // 2, min=0, max=width - window, description="left (x)")
        self.window.observe(self._follow_window, names="value")
        self.image_view = widgets.Image(format="png")
        self.probability_label = widgets.HTML()
        self.top_classes_view = widgets.HTML()
        self.probabilities = torch.empty(0)
        self.clean_probabilities = torch.empty(0)
        self.target = -1
        self.occluded = torch.empty(0)
        self._clean: tuple[int, Tensor, Tensor] | None = None  # (image index, normalized image, softmax)
        self._connect(
            "<b>Occlusion explorer</b> (Fig. 7). Move the grey square with <i>top (y)</i> and "
            "<i>left (x)</i>, change its side (<i>window</i>): the probability of the true class falls when the "
            "square covers what the model relies on. The bars show the five most probable classes "
            "(true class in orange).",
            {"image": self.image, "window": self.window, "y": self.y, "x": self.x},
            [
                widgets.HBox(
                    [
                        _captioned("what the model sees", self.image_view),
                        widgets.VBox([self.probability_label, self.top_classes_view]),
                    ]
                )
            ],
        )

    def _follow_window(self, change: dict[str, Any]) -> None:
        height, width = self.dataset.images.shape[-2:]
        with self._adjusting():
            self.x.max, self.y.max = width - change["new"], height - change["new"]

    def _clean_image(self, image: int) -> tuple[Tensor, Tensor]:
        if self._clean is None or self._clean[0] != image:
            normalized = _normalized(self.model, self.dataset, [image])[0]
            with torch.no_grad():
                softmax = self.model(normalized[None]).softmax(dim=1)[0].float().cpu()
            self._clean = (image, normalized, softmax)
        return self._clean[1], self._clean[2]

    def _draw(self, image: int, window: int, y: int, x: int) -> None:
        normalized, self.clean_probabilities = self._clean_image(image)
        occluded = occlude(normalized, y, x, window, self.fill)
        with torch.no_grad():
            self.probabilities = self.model(occluded[None]).softmax(dim=1)[0].float().cpu()
        self.occluded = occluded
        self.target = label = int(self.dataset.labels[image])
        scale = display_scale(occluded.shape[-1])
        shown = self.dataset.denormalize(occluded.cpu().float())
        self.image_view.value = _png(to_pixels(shown, scale), [(y, x, y + window, x + window)], scale)
        name = html.escape(_class_name(self.dataset, label))
        self.probability_label.value = (
            f"P({name}) = <b>{float(self.probabilities[label]):.4f}</b> with the occluder at "
            f"(y={y}, x={x}), window {window}; {float(self.clean_probabilities[label]):.4f} without it"
        )
        values, classes = self.probabilities.topk(min(5, self.probabilities.numel()))
        rows = []
        for value, cls in zip(values.tolist(), classes.tolist()):
            colour = "#f58231" if cls == label else "#4363d8"
            rows.append(
                f"<tr><td style='text-align:right;padding-right:6px'>{html.escape(_class_name(self.dataset, cls))}</td>"
                f"<td><div style='background:{colour};height:14px;width:{max(1, round(200 * value))}px'></div></td>"
                f"<td style='padding-left:6px'>{value:.3f}</td></tr>"
            )
        self.top_classes_view.value = "<table>" + "".join(rows) + "</table>"


#: Explore occlusion sensitivity (Fig. 7) one occluder position at a time (the class itself:
#: ``occlusion_explorer(model, dataset, image=0, window=None, fill=0.0)``).
occlusion_explorer = OcclusionExplorer


# --------------------------------------------------------------------------------------------
# Fig. 5: invariance
# --------------------------------------------------------------------------------------------


@dataclass
class _CurvesPicture:
    """Rendered curves of one image and kind, and where to draw the marker on them.

    ``pixels``: ``(H, W, 3)`` uint8; per panel, ``transforms`` map (amount, value) to display
    coordinates (origin bottom left), ``boxes`` are the axes' extents and ``values`` the
    plotted curve of the image (one value per amount).
    """

    pixels: np.ndarray
    transforms: list[Any]  # matplotlib Transform / TransformNode
    boxes: list[Bbox]
    values: list[list[float]]

    def marked_png(self, amount: float, column: int) -> bytes:
        """PNG bytes with a grey vertical line at ``amount`` and a dot on each panel's curve there
        (``column`` is the index of ``amount`` among the curves' amounts)."""
        image = Image.fromarray(self.pixels)
        draw = ImageDraw.Draw(image)
        height = self.pixels.shape[0]
        for transform, box, values in zip(self.transforms, self.boxes, self.values):
            x, y = transform.transform((amount, values[column]))
            draw.line([(x, height - box.y1), (x, height - box.y0)], fill=(128, 128, 128), width=1)
            draw.ellipse([x - 5, height - y - 5, x + 5, height - y + 5], fill=_HIGHLIGHT)
        return _png_bytes(image)


class InvarianceExplorer(Explorer):
    """Slide a transformation along the invariance curves of one image.

    Controls: ``image`` (Dropdown of the explorer's images), ``kind`` (Dropdown: translate, scale,
    rotate) and ``amount`` (SelectionSlider over the amounts of the kind; the options follow
    ``kind``). Views: ``image_view`` (the transformed image), ``curves_view`` (distance at each
    layer and P(true class) against the amount: the chosen image in colour, the others grey,
    the current amount marked) and ``caption``.

    Attributes:
        images: ``(n, 3, H, W)`` the normalized images; ``image_indices`` their dataset indices.
        curves: ``{kind: InvarianceCurves}`` over all ``n`` images, every kind computed when
            the explorer is built (so that no update has to compute them).
        transformed: ``(3, H, W)`` the normalized transformed image shown.
        marked: ``{layer: distance, ..., "probability": P(true class)}`` at the marked point.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: ImageTensorDataset,
        image_indices: Sequence[int],
        amounts: Mapping[str, Sequence[float]],
        layers: Sequence[str],
        fill: float = 0.0,
    ) -> None:
        super().__init__()
        self.model, self.dataset, self.layers, self.fill = model, dataset, tuple(layers), fill
        self.image_indices = [int(i) for i in image_indices]
        self.amounts = {kind: tuple(float(a) for a in values) for kind, values in amounts.items()}
        self.images = _normalized(model, dataset, self.image_indices)
        self.labels = dataset.labels[self.image_indices]
        self.curves: dict[str, InvarianceCurves] = {}
        self._curves_pictures: dict[tuple[str, int], _CurvesPicture] = {}
        self.transformed = torch.empty(0)
        self.marked: dict[str, float] = {}
        for kind in progress_bar(list(self.amounts), desc="invariance curves"):
            self.curves_for(kind)
        first_kind = next(iter(self.amounts))
        self.image = widgets.Dropdown(
            options=[
                (f"{i} ({_class_name(dataset, int(dataset.labels[i]))})", row)
                for row, i in enumerate(self.image_indices)
            ],
            value=0,
            description="image",
        )
        self.kind = widgets.Dropdown(options=list(self.amounts), value=first_kind, description="transform")
        self.amount = widgets.SelectionSlider(
            options=self._amount_options(first_kind),
            value=self._identity(first_kind),
            description="amount",
            continuous_update=False,
        )
        self.kind.observe(self._follow_kind, names="value")
        self.image_view, self.curves_view = widgets.Image(format="png"), widgets.Image(format="png")
        self.caption = widgets.HTML()
        self._connect(
            "<b>Invariance explorer</b> (Fig. 5). Choose an image and a transformation, then slide its "
            "amount: left, the transformed image; right, how far the features of layer 1 and layer 7 "
            "move from those of the original image, and the probability of the true class (red dot: "
            "the current amount).",
            {"image": self.image, "kind": self.kind, "amount": self.amount},
            [widgets.HBox([_captioned("transformed image", self.image_view), self.curves_view]), self.caption],
        )

    def _amount_options(self, kind: str) -> list[tuple[str, float]]:
        return [(f"{amount:g}", amount) for amount in self.amounts[kind]]

    def _identity(self, kind: str) -> float:
        identity = 1.0 if kind == "scale" else 0.0
        return identity if identity in self.amounts[kind] else self.amounts[kind][0]

    def _follow_kind(self, change: dict[str, Any]) -> None:
        with self._adjusting():
            self.amount.options = self._amount_options(change["new"])
            self.amount.value = self._identity(change["new"])

    def curves_for(self, kind: str) -> InvarianceCurves:
        """The curves of ``kind`` over all images (computed once, then cached)."""
        if kind not in self.curves:
            self.curves[kind] = invariance_curves(
                self.model,
                self.images,
                kind,
                self.amounts[kind],
                layers=self.layers,
                target=self.labels,
                fill=self.fill,
            )
        return self.curves[kind]

    def _draw(self, image: int, kind: str, amount: float) -> None:
        curves = self.curves_for(kind)
        column = self.amounts[kind].index(amount)
        self.transformed = transform_images(self.images[image : image + 1], kind, amount, self.fill)[0]
        self.marked = {layer: float(curves.distances[layer][image, column]) for layer in self.layers}
        self.marked["probability"] = float(curves.probabilities[image, column])
        shown = self.dataset.denormalize(self.transformed.cpu().float())
        self.image_view.value = _png(to_pixels(shown, display_scale(shown.shape[-1])))
        self.curves_view.value = self._curves_picture(kind, image).marked_png(amount, column)
        label, top_class = int(curves.target[image]), int(curves.top_classes[image, column])
        distances = ", ".join(f"{layer} {self.marked[layer]:.3g}" for layer in self.layers)
        self.caption.value = (
            f"{html.escape(kind)} by {amount:g}: distance {distances}; "
            f"P({html.escape(_class_name(self.dataset, label))}) = {self.marked['probability']:.3f}, "
            f"most probable class: {html.escape(_class_name(self.dataset, top_class))}"
        )

    def _curves_picture(self, kind: str, image: int) -> _CurvesPicture:
        """The curves of ``image`` for ``kind`` without the marker, drawn once and cached."""
        key = (kind, image)
        if key not in self._curves_pictures:
            curves = self.curves_for(kind)
            panels = [
                (curves.distances[layer], f"{layer}: distance to original", "Euclidean distance")
                for layer in self.layers
            ]
            panels.append((curves.probabilities, "P(true class)", "probability"))
            figure = Figure(figsize=(3.0 * len(panels), 2.7), dpi=80, layout="constrained")
            canvas = FigureCanvasAgg(figure)
            amounts = curves.amounts.numpy()
            axes, values = [], []
            for index, (panel_values, title, ylabel) in enumerate(panels):
                axis = figure.add_subplot(1, len(panels), index + 1)
                for other in range(panel_values.shape[0]):
                    if other != image:
                        axis.plot(amounts, panel_values[other].numpy(), color="0.8", linewidth=1)
                axis.plot(amounts, panel_values[image].numpy(), color="#4363d8", linewidth=2)
                axis.set(title=title, xlabel=AMOUNT_LABELS[kind], ylabel=ylabel)
                if panel_values is curves.probabilities:
                    axis.set_ylim(-0.04, 1.04)
                axis.grid(alpha=0.3)
                axes.append(axis)
                values.append(panel_values[image].tolist())
            canvas.draw()
            pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
            self._curves_pictures[key] = _CurvesPicture(
                pixels, [axis.transData.frozen() for axis in axes], [axis.bbox.frozen() for axis in axes], values
            )
        return self._curves_pictures[key]


def invariance_explorer(
    model: nn.Module,
    dataset: ImageTensorDataset,
    image_indices: Sequence[int] | None = None,
    amounts: Mapping[str, Sequence[float]] | None = None,
    layers: Sequence[str] = ("relu1", "relu7"),
    fill: float = 0.0,
) -> InvarianceExplorer:
    """Explore invariance to translation, scaling and rotation (Fig. 5).

    Args:
        model: a named classifier in eval mode (e.g. a trained :class:`~course_utils.models.ZFNet`).
        dataset: the images; their labels are the true classes.
        image_indices: the images to offer; default: the first image of each class.
        amounts: ``{kind: amounts}`` for some of "translate", "scale", "rotate" (pixels, factors,
            degrees); default :data:`DEFAULT_AMOUNTS`. The slider steps through exactly these.
        layers: the layers whose feature distances are plotted (layer 1 and layer 7 of the ZFNet).
        fill: value of the area that comes in from outside (0 = the dataset mean).
    """
    _check_model_and_data(model, dataset)
    if image_indices is None:
        image_indices = [int(torch.nonzero(dataset.labels == label)[0]) for label in dataset.labels.unique().tolist()]
    image_indices = [int(i) for i in image_indices]
    if not image_indices:
        raise ValueError("image_indices is empty; give at least one dataset index")
    bad = [i for i in image_indices if not 0 <= i < len(dataset)]
    if bad:
        raise ValueError(
            f"image index {bad[0]} is out of range: the dataset has {len(dataset)} images (0..{len(dataset) - 1})"
        )
    amounts = DEFAULT_AMOUNTS if amounts is None else amounts
    if not amounts:
        raise ValueError(f"amounts is empty; give amounts for at least one of {', '.join(TRANSFORMATIONS)}")
    for kind, values in amounts.items():
        if kind not in TRANSFORMATIONS:
            raise ValueError(f"unknown transformation {kind!r} in amounts; choose from {', '.join(TRANSFORMATIONS)}")
        if len(values) == 0 or len(set(float(v) for v in values)) != len(values):
            raise ValueError(f"amounts[{kind!r}] must hold distinct amounts, at least one, got {list(values)}")
    for layer in layers:
        get_layer(model, layer)  # KeyError listing the valid names
    return InvarianceExplorer(model, dataset, image_indices, amounts, layers, fill)
