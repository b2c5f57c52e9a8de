#!/usr/bin/env python3
"""Render the Slicer module's panel to a PNG without Slicer (for the README and the docs).

Loads CIMLSegmentation/Resources/UI/CIMLSegmentation.ui with PySide6, offscreen, after swapping
the CTK/MRML widgets for plain Qt widgets of the same base class, then fills it the way the module
does for the BraTS sample model once a run has finished: one input row per modality with its role
(or none for a modality the run did not have), the role table, the status and log of the run, and
the relations table and map list, all from a real report.json of `ciml segment` (--report; by
default docs/images/module-panel-report.json) through the same functions the panel uses: the
relations table's cells from `report.relations_table`, the role table's from `RoleRow.cells`,
the status line from `job.done_line`.

    QT_QPA_PLATFORM=offscreen python scripts/render_module_panel.py --out docs/images/module-panel.png
    QT_QPA_PLATFORM=offscreen python scripts/render_module_panel.py --section finetune \
        --out docs/images/module-finetune.png

The default report was written by the built-in model on the sample case of seed 2026:

    ciml sample-data --kind brats --cases 1 --out /tmp/panel-case --seed 2026
    ciml segment --model CIMLSegmentation/Resources/Models/brats-sample \\
        --input t1=/tmp/panel-case/BraTS-sample-000/BraTS-sample-000_t1.nii.gz ... --out /tmp/panel-out
"""

import argparse
import datetime
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "CIMLSegmentation"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt starts: no display needed

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets  # noqa: E402  (after the path and platform)

from ciml.choices import DEVICES  # noqa: E402
from CIMLSegmentationLib.job import done_line  # noqa: E402
from CIMLSegmentationLib.models import read_model, summary  # noqa: E402
from CIMLSegmentationLib.process import device_label, segmenting_line  # noqa: E402
from CIMLSegmentationLib.progress import elapsed_text  # noqa: E402
from CIMLSegmentationLib.report import fill_table, first_map, map_keys, map_title, relations_table, report_warnings  # noqa: E402
from CIMLSegmentationLib.roles import modality_label, role_table, withhold_choices  # noqa: E402
from CIMLSegmentationLib.training import fine_tuned_name, validation_dice  # noqa: E402
from CIMLSegmentationLib.trainingcases import cases_text  # noqa: E402

BUILTIN_MODEL = ROOT / "CIMLSegmentation" / "Resources" / "Models" / "brats-sample"
REPORT = ROOT / "docs" / "images" / "module-panel-report.json"
# The values of a real two-step fine-tuning of the built-in model on two sample cases (see its "what").
FINETUNE_RUN = ROOT / "docs" / "images" / "module-finetune-run.json"
FINETUNE_DATE = "2026-01-15"  # the date in the registered name shown

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
NONE_DISPLAY = "(none: segment without it)"  # the selectors' none entry, as the panel sets it


def log_lines(report: dict) -> list:
    """The Log box after the run, as the panel and the worker write it: the panel's first line,
    the worker's summary (the format of `ciml segment`'s last lines, from the report; the output
    folder is the run's temporary one), the notes, and the status."""
    lines = [segmenting_line(report["model"]["name"], "auto"),
             f"segmented with {report['model']['name']} on {report['device']} in "
             f"{sum(report['timings_s'].values()):.1f} s; outputs in <temporary folder>/out"]
    for target, entry in report["targets"].items():
        shares = ", ".join(f"{m} {100 * s:.0f}%" for m, s in entry.get("contributions", {}).items())
        lines.append(f"  {target}: {entry['volume_ml']:.1f} ml" + (f"  (contributions: {shares})" if shares else ""))
    lines += [f"Note: {note}" for note in report_warnings(report)]
    return lines + [status(report)]


def status(report: dict) -> str:
    """The status line after the run, as the panel's ``RunRecord.end`` makes it."""
    return done_line(report_warnings(report))


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


def fill(panel, model, report: dict):
    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    card = model.card
    modalities = model.modalities
    absent = report.get("absent", [])
    find(QtWidgets.QComboBox, "modelComboBox").addItem(model.display_name)
    find(QtWidgets.QLabel, "modelSummaryLabel").setText(summary(model))

    form = find(QtWidgets.QWidget, "inputsPlaceholder").layout()
    for modality in modalities:
        label = QtWidgets.QLabel(modality_label(card, modality) + ":")
        combo = QtWidgets.QComboBox()
        combo.addItem(NONE_DISPLAY if modality in absent else BRATS_VOLUMES[modality])
        form.addRow(label, combo)

    roles = find(QtWidgets.QTableWidget, "roleTableWidget")
    rows = role_table(card)
    roles.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row.cells):
            roles.setItem(r, c, QtWidgets.QTableWidgetItem(text))
    roles.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
    roles.horizontalHeader().setStretchLastSection(True)
    roles.setFixedHeight(roles.horizontalHeader().height() + sum(roles.rowHeight(i) for i in range(len(rows))) + 4)

    find(QtWidgets.QComboBox, "outputSegmentationSelector").addItem("Create new segmentation")
    devices = find(QtWidgets.QComboBox, "deviceComboBox")
    for device in DEVICES:  # as the panel fills it
        devices.addItem(device_label(device), device)
    maps = report.get("maps", "effects")
    find(QtWidgets.QCheckBox, "computeHeatMapsCheckBox").setChecked(maps in ("effects", "all"))
    find(QtWidgets.QCheckBox, "computeGradCamCheckBox").setChecked(maps in ("gradcam", "all"))
    find(QtWidgets.QProgressBar, "progressBar").setVisible(False)  # hidden once a run has ended
    find(QtWidgets.QLabel, "statusLabel").setText(status(report))
    find(QtWidgets.QLabel, "elapsedLabel").setText(elapsed_text(sum(report["timings_s"].values())))
    lines = log_lines(report)
    log = find(QtWidgets.QPlainTextEdit, "logTextEdit")
    log.setPlainText("\n".join(lines))
    log.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    log.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    log.setFixedHeight(log.fontMetrics().lineSpacing() * len(lines) + 16)
    log.parentWidget().setSizePolicy(QtWidgets.QSizePolicy.Preferred, QtWidgets.QSizePolicy.Maximum)

    # The relations table from the function Panel.showRelations fills it from.
    relations = find(QtWidgets.QTableWidget, "relationsTableWidget")
    content = relations_table(report, modalities, absent)
    fill_table(relations, content, QtWidgets.QTableWidgetItem, QtCore.Qt.AlignCenter)
    relations.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
    relations.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeToContents)
    relations.horizontalHeader().setSectionResizeMode(relations.columnCount() - 1, QtWidgets.QHeaderView.ResizeToContents)
    relations.resizeRowsToContents()
    for table in (roles, relations):
        table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    relations.setFixedHeight(relations.horizontalHeader().height()
                             + sum(relations.rowHeight(i) for i in range(len(content.cells))) + 4)
    find(QtWidgets.QPushButton, "showChartButton").setEnabled(True)
    given = [m for m in modalities if m not in absent]
    offered = withhold_choices(card, given)
    find(QtWidgets.QPushButton, "segmentWithoutButton").setEnabled(any(not why for _, why in offered))
    heat = find(QtWidgets.QComboBox, "heatMapComboBox")
    keys = list(map_keys(list(report.get("outputs", {}).values()), modalities, model.targets))
    heat.addItems(["(none)"] + [map_title(key) for key in keys])
    shown = first_map(keys, content.rows, modalities)
    heat.setCurrentIndex(keys.index(shown) + 1 if shown else 0)
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


def fill_fine_tuning(panel, run: dict) -> None:
    """Only the Fine-tuning section, as it stands after a finished run and a comparison: the
    cases line, the status and validation Dice lines from the run's values through the panel's
    own functions."""
    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    layout = panel.layout()
    for index in range(layout.count()):  # the panel's own rows: only the Fine-tuning section stays
        widget = layout.itemAt(index).widget()
        if widget is not None:
            widget.setVisible(widget.objectName() == "trainingCollapsibleButton")
    folder = "~/CIML training cases"
    find(QtWidgets.QLineEdit, "trainingCasesPathLineEdit").setText(folder)
    find(QtWidgets.QLineEdit, "trainingDataPathLineEdit").setText(folder)
    find(QtWidgets.QLabel, "trainingCasesListLabel").setText(cases_text(run["cases"]))
    find(QtWidgets.QComboBox, "trainingBaseModelComboBox").addItem(f"{run['base']} (built-in)")
    find(QtWidgets.QProgressBar, "trainingProgressBar").setVisible(False)
    name = fine_tuned_name(run["base"], datetime.date.fromisoformat(FINETUNE_DATE))
    find(QtWidgets.QLabel, "trainingStatusLabel").setText(f"Done: saved as '<models folder>/{name}'.")
    step, dice = validation_dice(run["validation_line"])
    find(QtWidgets.QLabel, "trainingDiceLabel").setText(f"Validation Dice at step {step}: {dice}")
    table = find(QtWidgets.QTableWidget, "compareTableWidget")
    table.setVisible(False)  # the comparison needs Slicer's segmentations: not shown here
    find(QtWidgets.QPushButton, "compareButton").setEnabled(True)


def read_report(path: Path) -> dict:
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(report.get("targets"), dict) or "timings_s" not in report:
        raise ValueError(f"{path} is not a report.json of ciml segment")
    return report


def render(out: Path, width: int = 460, report_path: Path = REPORT, section: str = "panel") -> Path:
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    app.setFont(QtGui.QFont("DejaVu Sans", 9))
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(plain_ui(ROOT / "CIMLSegmentation" / "Resources" / "UI" / "CIMLSegmentation.ui")))
    buffer.open(QtCore.QIODevice.ReadOnly)
    panel = QtUiTools.QUiLoader().load(buffer)
    if panel is None:
        raise RuntimeError("the .ui did not load")
    if section == "finetune":
        fill_fine_tuning(panel, json.loads(FINETUNE_RUN.read_text(encoding="utf-8")))
    else:
        fill(panel, read_model(BUILTIN_MODEL, origin="built-in"), read_report(report_path))
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
    parser.add_argument("--report", default=str(REPORT),
                        help="the report.json of a `ciml segment` run of the built-in model that fills the panel")
    parser.add_argument("--section", choices=("panel", "finetune"), default="panel",
                        help="finetune: only the Fine-tuning section, from docs/images/module-finetune-run.json")
    args = parser.parse_args(argv)
    print(render(Path(args.out), args.width, Path(args.report), args.section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
