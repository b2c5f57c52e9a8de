"""The user's scene is left as it was: inputs are written as copies (``exportNode``), never
through the user's storage nodes, and a result replaces an existing segmentation's segments only
once the new ones exist, with binary labelmap as the source representation first."""

import ast

import numpy as np
import pytest
import slicer_lib_helpers  # noqa: F401  (puts the module folder on sys.path)

from CIMLSegmentationLib import compare, geometry, segments, trainingcases

GLUE = slicer_lib_helpers.MODULE_DIR / "CIMLSegmentationLib" / "slicerglue"
MODULE_FILE = slicer_lib_helpers.MODULE_DIR / "CIMLSegmentation.py"
# Calls that read or change a node's own storage: saveNode reuses it (qSlicerNodeWriter::write),
# the others name or replace it.
STORAGE_CALLS = {"saveNode", "GetStorageNode", "AddDefaultStorageNode", "CreateDefaultStorageNode",
                 "SetAndObserveStorageNodeID", "GetStorageNodeID"}
# Storage methods allowed only on a storage node the same function made itself.
STORAGE_METHODS = {"SetFileName", "WriteData", "ReadData", "SetSingleFile", "SetUseCompression"}


def storage_problems(name: str, source: str) -> list:
    """Where ``source`` touches a node's storage: a call of STORAGE_CALLS, or a storage method
    on anything but a variable assigned from ``slicer.vtkMRML...StorageNode()`` in that function."""
    problems = []
    tree = ast.parse(source)
    for function in [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        own = {t.id for n in ast.walk(function) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
               and isinstance(n.value.func, ast.Attribute) and n.value.func.attr.endswith("StorageNode")
               for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            if method in STORAGE_CALLS:
                problems.append(f"{name}:{node.lineno}: {method}")
            elif method in STORAGE_METHODS and not (isinstance(node.func.value, ast.Name) and node.func.value.id in own):
                problems.append(f"{name}:{node.lineno}: {method} on a storage node it did not make")
    return sorted(set(problems))


def test_no_slicer_file_of_the_module_touches_a_nodes_storage():
    files = sorted(GLUE.glob("*.py")) + [MODULE_FILE]
    assert storage_problems("all", "") == []
    assert [p for f in files for p in storage_problems(f.name, f.read_text())] == []


def test_the_storage_check_finds_the_old_export_and_accepts_a_storage_node_of_its_own():
    old = ("def exportInputs(node, path):\n"
           "    slicer.util.saveNode(node, path, {'useCompression': 0})\n"
           "    node.GetStorageNode().SetFileName(path)\n")
    assert storage_problems("old.py", old) == ["old.py:2: saveNode", "old.py:3: GetStorageNode",
                                               "old.py:3: SetFileName on a storage node it did not make"]
    own = ("def load(path):\n"
           "    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()\n"
           "    storage.SetFileName(path)\n"
           "    storage.ReadData(node)\n")
    assert storage_problems("own.py", own) == []


def test_the_inputs_are_written_by_export_node_in_world_space_each_with_its_own_properties():
    source = (GLUE / "export.py").read_text()
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "exportNode"]
    assert len(calls) == 1
    assert [(k.arg, k.value.value) for k in calls[0].keywords] == [("world", True)]
    first, second = geometry.write_properties(), geometry.write_properties()
    first["fileFormat"] = "NRRD (.nrrd)"  # what exportNode does to the dict it is given
    assert second == {"useCompression": 0} and geometry.write_properties() == {"useCompression": 0}


def test_the_inputs_are_written_inside_the_jobs_own_folder(tmp_path):
    paths = geometry.input_paths(str(tmp_path), ["t1", "flair"])
    assert paths == {"t1": str(tmp_path / "t1.nrrd"), "flair": str(tmp_path / "flair.nrrd")}


# --- replacing the segments of an existing segmentation ---------------------------------------
@pytest.mark.parametrize("source", ["Closed surface", "Planar contour", ""])
def test_a_segmentation_without_a_labelmap_source_is_switched_before_anything_is_imported(source):
    steps = segments.replace_steps(source)
    assert steps == [segments.READ_LABEL_MAP, segments.BUILD_SEGMENTS, segments.SET_SOURCE,
                     segments.REMOVE_OLD, segments.COPY_NEW]


def test_a_labelmap_segmentation_keeps_its_source_and_loses_nothing_before_the_result_exists():
    steps = segments.replace_steps(segments.BINARY_LABELMAP)
    assert segments.SET_SOURCE not in steps
    assert steps.index(segments.BUILD_SEGMENTS) < steps.index(segments.REMOVE_OLD) < steps.index(segments.COPY_NEW)


def test_the_glue_carries_out_every_step_by_its_name():
    """results.loadSegmentation maps each step to an action and runs replace_steps' order."""
    source = (GLUE / "results.py").read_text()
    tree = ast.parse(source)
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "loadSegmentation")
    actions = next(n for n in ast.walk(function) if isinstance(n, ast.Assign)
                   and getattr(n.targets[0], "id", "") == "actions")
    keys = {k.id for k in actions.value.keys}
    assert keys == {"READ_LABEL_MAP", "BUILD_SEGMENTS", "SET_SOURCE", "REMOVE_OLD", "COPY_NEW"}
    step = dict(zip((k.id for k in actions.value.keys), actions.value.values))["SET_SOURCE"]
    assert step.attr == "SetSourceRepresentationToBinaryLabelmap"
    assert "RemoveAllSegments" not in ast.unparse(function).split("actions = ")[0]  # only as a step


# --- segments to the model's label map ---------------------------------------------------------
BRATS = [{"name": "WT", "label": 2, "includes": [1, 2, 4]}, {"name": "TC", "label": 1, "includes": [1, 4]},
         {"name": "ET", "label": 4, "includes": [4]}]


def test_nested_segments_become_the_labels_they_were_read_from():
    labels = np.array([[0, 2, 1, 4, 2]], dtype=np.uint8)
    back = trainingcases.label_map(trainingcases.regions(labels, BRATS), BRATS)
    assert back.tolist() == labels.tolist()
    assert [t["name"] for t in segments.paint_order(BRATS)] == ["WT", "TC", "ET"]


def test_a_segment_matching_no_target_is_refused_with_its_name():
    masks = {"WT": np.ones((2, 2)), "Tumor": np.ones((2, 2))}
    with pytest.raises(segments.SegmentError, match="'Tumor' match no target of the model"):
        trainingcases.label_map(masks, BRATS)


def test_dice_and_the_comparison_rows():
    a, b = np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])
    assert compare.dice(a, b) == pytest.approx(0.5) and compare.dice(0 * a, 0 * b) is None
    rows = compare.dice_table({"WT": a, "ET": 0 * a}, {"before": {"WT": b, "ET": 0 * a}, "after": {"WT": a, "ET": a}},
                               ["WT", "ET"])
    assert rows == [["WT", "0.500", "1.000"], ["ET", "-", "0.000"]]
