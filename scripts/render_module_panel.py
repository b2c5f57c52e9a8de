#!/usr/bin/env python3
"""Render the Slicer module's panel to a PNG without Slicer (for the README and the docs).

Loads CIMLSegmentation/Resources/UI/CIMLSegmentation.ui with PySide6, offscreen, after swapping
the CTK/MRML widgets for plain Qt widgets of the same base class, then fills it the way the module
does for the BraTS sample model: one input row per modality with its role, the role table, a
run in progress and the relations table of an earlier run.

    QT_QPA_PLATFORM=offscreen python scripts/render_module_panel.py --out docs/images/module-panel.png
"""

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "CIMLSegmentation"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt starts: no display needed

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets  # noqa: E402  (after the path and platform)

from ciml.choices import DEVICES  # noqa: E402
from CIMLSegmentationLib.models import read_model, summary  # noqa: E402
from CIMLSegmentationLib.process import device_label  # noqa: E402
from CIMLSegmentationLib.progress import elapsed_text, status_text  # noqa: E402
from CIMLSegmentationLib.roles import modality_label, role_table  # noqa: E402

BUILTIN_MODEL = ROOT / "CIMLSegmentation" / "Resources" / "Models" / "brats-sample"

# CTK/MRML class -> plain Qt stand-in, and which of its properties the stand-in understands.
STAND_INS = {
    "qMRMLWidget": ("QWidget", set()),
    "ctkCollapsibleButton": ("QGroupBox", {"text"}),
    "qMRMLNodeComboBox": ("QComboBox", {"toolTip"}),
    "ctkPathLineEdit": ("QLineEdit", {"toolTip"}),
    "ctkSliderWidget": ("QSlider", {"toolTip"}),
}

BRATS_VOLUMES = {"t1": "BraTS-sample-000_t1", "t1ce": "BraTS-sample-000_t1ce",
                 "t2": "BraTS-sample-000_t2", "flair": "BraTS-sample-000_flair"}
# The Log box as the panel and the worker write it: the earlier run's summary, then this run.
LOG_LINES = ["segmented with brats-sample on cuda in 21.4 s; outputs in /tmp/ciml-segment-k2j1/out",
             "  WT: 61.3 ml  (contributions: t1 8%, t1ce 17%, t2 21%, flair 54%)",
             "Done.",
             "Segmenting with brats-sample on Auto."]
RELATIONS = [("WT", {"t1": 0.08, "t1ce": 0.17, "t2": 0.21, "flair": 0.54}, 61.3),
             ("TC", {"t1": 0.11, "t1ce": 0.58, "t2": 0.14, "flair": 0.17}, 18.9),
             ("ET", {"t1": 0.06, "t1ce": 0.71, "t2": 0.09, "flair": 0.14}, 7.4)]


def plain_ui(ui_path: Path) -> bytes:
    """The .ui XML with stand-in classes and without CTK-only properties and connections."""
    tree = ET.parse(ui_path)
    root = tree.getroot()
    for widget in root.iter("widget"):
        stand_in = STAND_INS.get(widget.get("class"))
        if not stand_in:
            continue
        widget.set("class", stand_in[0])
        for prop in list(widget.findall("property")):
            if prop.get("name") not in stand_in[1]:
                widget.remove(prop)
            elif stand_in[0] == "QGroupBox" and prop.get("name") == "text":
                prop.set("name", "title")
    for layout in root.iter("layout"):  # the trailing spacer only matters in Slicer's tall panel
        for item in [i for i in layout.findall("item") if i.find("spacer") is not None]:
            layout.remove(item)
    for tag in ("customwidgets", "connections"):
        for element in root.findall(tag):
            root.remove(element)
    return ET.tostring(root, encoding="utf-8")


def fill(panel, model):
    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    card = model.card
    find(QtWidgets.QComboBox, "modelComboBox").addItem(model.display_name)
    find(QtWidgets.QLabel, "modelSummaryLabel").setText(summary(model))

    form = find(QtWidgets.QWidget, "inputsPlaceholder").layout()
    for modality in model.modalities:
        label = QtWidgets.QLabel(modality_label(card, modality) + ":")
        combo = QtWidgets.QComboBox()
        combo.addItem(BRATS_VOLUMES[modality])
        form.addRow(label, combo)

    roles = find(QtWidgets.QTableWidget, "roleTableWidget")
    rows = role_table(card)
    roles.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate((row.target, row.subtask, row.primary, ", ".join(row.auxiliaries))):
            roles.setItem(r, c, QtWidgets.QTableWidgetItem(text))
    roles.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
    roles.horizontalHeader().setStretchLastSection(True)
    roles.setFixedHeight(roles.horizontalHeader().height() + sum(roles.rowHeight(i) for i in range(len(rows))) + 4)

    find(QtWidgets.QComboBox, "outputSegmentationSelector").addItem("Create new segmentation")
    devices = find(QtWidgets.QComboBox, "deviceComboBox")
    for device in DEVICES:  # as the panel fills it
        devices.addItem(device_label(device), device)
    apply = find(QtWidgets.QPushButton, "applyButton")
    apply.setText("Cancel")
    find(QtWidgets.QProgressBar, "progressBar").setValue(62)
    find(QtWidgets.QLabel, "statusLabel").setText(
        status_text({"event": "progress", "stage": "sliding_window", "fraction": 0.62, "eta_s": 14}))
    find(QtWidgets.QLabel, "elapsedLabel").setText(elapsed_text(23))
    log = find(QtWidgets.QPlainTextEdit, "logTextEdit")
    log.setPlainText("\n".join(LOG_LINES))
    log.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    log.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    log.setFixedHeight(log.fontMetrics().lineSpacing() * len(LOG_LINES) + 16)
    log.parentWidget().setSizePolicy(QtWidgets.QSizePolicy.Preferred, QtWidgets.QSizePolicy.Maximum)

    relations = find(QtWidgets.QTableWidget, "relationsTableWidget")
    relations.setColumnCount(len(model.modalities) + 2)
    relations.setHorizontalHeaderLabels(["Target"] + model.modalities + ["ml"])
    relations.setRowCount(len(RELATIONS))
    for r, (target, shares, volume) in enumerate(RELATIONS):
        for c, text in enumerate([target] + [f"{100 * shares[m]:.0f}%" for m in model.modalities] + [f"{volume:.1f}"]):
            item = QtWidgets.QTableWidgetItem(text)
            item.setTextAlignment(QtCore.Qt.AlignCenter)
            relations.setItem(r, c, item)
    relations.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
    relations.horizontalHeader().setSectionResizeMode(relations.columnCount() - 1, QtWidgets.QHeaderView.ResizeToContents)
    for table in (roles, relations):
        table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    relations.setFixedHeight(relations.horizontalHeader().height() + sum(relations.rowHeight(i) for i in range(len(RELATIONS))) + 4)
    find(QtWidgets.QPushButton, "showChartButton").setEnabled(True)
    heat = find(QtWidgets.QComboBox, "heatMapComboBox")
    heat.addItems(["flair"] + [m for m in model.modalities if m != "flair"])
    slider = find(QtWidgets.QSlider, "heatMapOpacitySlider")
    slider.setOrientation(QtCore.Qt.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(60)

    # Fine-tuning is collapsed in Slicer: show only its title bar.
    training = find(QtWidgets.QGroupBox, "trainingCollapsibleButton")
    for child in training.findChildren(QtWidgets.QWidget):
        child.hide()
    training.setTitle("Fine-tuning (collapsed)")
    training.setFixedHeight(28)


def render(out: Path, width: int = 460) -> Path:
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    app.setFont(QtGui.QFont("DejaVu Sans", 9))
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(plain_ui(ROOT / "CIMLSegmentation" / "Resources" / "UI" / "CIMLSegmentation.ui")))
    buffer.open(QtCore.QIODevice.ReadOnly)
    panel = QtUiTools.QUiLoader().load(buffer)
    if panel is None:
        raise RuntimeError("the .ui did not load")
    fill(panel, read_model(BUILTIN_MODEL, origin="built-in"))
    panel.setFixedWidth(width)
    panel.adjustSize()
    panel.resize(width, panel.layout().sizeHint().height())
    out.parent.mkdir(parents=True, exist_ok=True)
    image = panel.grab()
    if not image.save(str(out)):
        raise RuntimeError(f"could not write {out}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "module-panel.png"))
    parser.add_argument("--width", type=int, default=460)
    args = parser.parse_args(argv)
    print(render(Path(args.out), args.width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
