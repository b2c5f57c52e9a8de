"""The plain parts of how results appear in Slicer: input reference roles that survive
a scene save, colour node IDs that exist at every supported Slicer, the shipped terminology and
the entries made from it, the attribute that keeps output volumes out of the input selectors,
the relations chart's colours and labels, and the parameter-node fields that are saved.

The Slicer side is checked against the copied index of Slicer's API (Testing/data/slicer-api)
and against Slicer's own parsing rules, ported here where noted.
"""

import ast
import itertools
import json
import re
from pathlib import Path

import pytest
import slicer_lib_helpers  # noqa: F401  (puts the module folder on sys.path)

from ciml.bundle import read_card
from ciml.config import card_from_dict, preset, preset_dict
from ciml.config.presets import PRESETS
from ciml.errors import CardError
from CIMLSegmentationLib import naming, report, roles

TESTING = Path(__file__).resolve().parent
MODULE = TESTING.parent / "CIMLSegmentation"
GLUE = MODULE / "CIMLSegmentationLib" / "slicerglue"
API = TESTING / "data" / "slicer-api"
VERSIONS = ("5.8.1", "5.10.0", "5.12.3", "5.13.0")
# The schemas LoadTerminologyFromFile accepts (vtkSlicerTerminologiesModuleLogic.cxx, 5.8.1 to 5.13).
TERMINOLOGY_SCHEMAS = ("https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#",
                       "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/segment-context-schema.json#")
BRATS_REGIONS = {"WT": ("99CIML", "BRATS-WT", "Whole tumor"), "TC": ("99CIML", "BRATS-TC", "Tumor core"),
                 "ET": ("99CIML", "BRATS-ET", "Enhancing tumor")}


# --- node-reference roles ---------------------------------------------------------------------

def write_references(references):
    """vtkMRMLNode::WriteXML's references attribute: 'role:id id;role:id;'."""
    return "".join(f"{role}:{' '.join(ids)};" for role, ids in references.items())


def parse_references(attribute):
    """vtkMRMLNode::ParseReferencesAttribute (5.8.1 to 5.13): each part up to ';', the role up
    to its first ':', the IDs separated by white space."""
    references = {}
    start, end, sep = 0, attribute.find(";"), attribute.find(":")
    while start != -1 and sep != -1 and start != end and start != sep:
        role = attribute[start:sep]
        if role not in references:
            ids = attribute[sep + 1:end if end != -1 else len(attribute)].split()
            references[role] = [i for i in ids if "{" not in i]
        start = -1 if end == -1 else end + 1
        end, sep = attribute.find(";", start), attribute.find(":", start)
    return references


def test_input_roles_survive_a_scene_save_and_reopen():
    modalities = ["t1", "t1ce", "t2", "flair", "t1_pre", "PET-CT"]
    saved = {naming.input_role(m): [f"vtkMRMLScalarVolumeNode{i}"] for i, m in enumerate(modalities)}
    saved["outputSegmentation"] = ["vtkMRMLSegmentationNode1"]  # the wrapper's own node field
    read = parse_references(write_references(saved))
    assert read == saved
    assert {naming.role_modality(r): ids[0] for r, ids in read.items() if naming.role_modality(r)} == \
        {m: f"vtkMRMLScalarVolumeNode{i}" for i, m in enumerate(modalities)}
    # the earlier "input:<modality>" roles came back as one role "input" with IDs that name nothing
    old = parse_references(write_references({"input:flair": ["vtkMRMLScalarVolumeNode1"],
                                             "input:t1": ["vtkMRMLScalarVolumeNode2"]}))
    assert old == {"input": ["flair:vtkMRMLScalarVolumeNode1"]}


def test_input_role_names():
    assert naming.input_role("flair") == "input_flair"
    assert naming.role_modality("input_flair") == "flair" and naming.role_modality("input_t1_pre") == "t1_pre"
    assert naming.role_modality("outputSegmentation") is None and naming.role_modality("input_") is None
    for card in (preset(name) for name in PRESETS):
        for modality in card.modality_names:
            assert not set(":; {}") & set(naming.input_role(modality))
    for bad in ("", "1t1", "t1:ce", "t1 ce", "t1;", None):
        with pytest.raises(ValueError):
            naming.input_role(bad)


def test_the_card_and_the_roles_accept_the_same_modality_names():
    for name, accepted in (("t1_pre", True), ("PET-CT", True), ("t1:ce", False), ("1t1", False)):
        card = preset_dict("shapes")
        old = card["modalities"][2]["name"]
        card["modalities"][2]["name"] = name
        card["subtasks"][0]["auxiliaries"] = [name if a == old else a for a in card["subtasks"][0]["auxiliaries"]]
        if accepted:
            card_from_dict(card)
            assert naming.role_modality(naming.input_role(name)) == name
        else:
            with pytest.raises(CardError):
                card_from_dict(card)
            with pytest.raises(ValueError):
                naming.input_role(name)


# --- colour tables ------------------------------------------------------------------------------

def color_ids(version):
    return set(re.findall(r"^(vtkMRML\S+)$", (API / version / "slicer-color-ids.txt").read_text(), re.M))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_colour_table_the_module_names_exists_in(version):
    ids = color_ids(version)
    assert set(naming.HEAT_MAP_COLOR_IDS + naming.EFFECT_MAP_COLOR_IDS) <= ids
    assert "vtkMRMLColorTableNodeInferno" not in ids  # without its file name, an ID no Slicer has


def test_colour_choices_and_their_fallbacks():
    assert naming.HEAT_MAP_COLOR_IDS[0] == "vtkMRMLColorTableNodeFileInferno.txt"
    assert naming.EFFECT_MAP_COLOR_IDS[0] == "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
    for ids in (naming.HEAT_MAP_COLOR_IDS, naming.EFFECT_MAP_COLOR_IDS):
        assert len(ids) == 2 and "NodeFile" not in ids[-1]  # the fallback is built in, not read from a file
    scene = {"vtkMRMLPETProceduralColorNodePET-Heat", "vtkMRMLColorTableNodeFMRI"}
    heat = naming.first_available(naming.HEAT_MAP_COLOR_IDS, scene.__contains__)
    assert heat == "vtkMRMLPETProceduralColorNodePET-Heat"
    scene |= set(naming.HEAT_MAP_COLOR_IDS)
    assert naming.first_available(naming.HEAT_MAP_COLOR_IDS, scene.__contains__) == naming.HEAT_MAP_COLOR_IDS[0]
    assert naming.first_available(naming.EFFECT_MAP_COLOR_IDS, set().__contains__) is None


def test_the_diverging_table_is_centred():
    """DivergingBlueRed.txt (Slicer's Base/Logic/Resources/ColorFiles): blue below the middle,
    near-white at it, red above; the effect map's window is symmetric about 0 to match."""
    ids = color_ids("5.8.1")
    assert "vtkMRMLColorTableNodeFileDivergingBlueRed.txt" in ids and "vtkMRMLColorTableNodeFMRI" in ids


# --- terminology ---------------------------------------------------------------------------------

def terminology():
    return json.loads(Path(naming.TERMINOLOGY_FILE).read_text(encoding="utf-8"))


def entry_parts(entry):
    """vtkSlicerTerminologiesModuleLogic::DeserializeTerminologyEntry's checks: seven '~' parts,
    a context, a category that is not empty, each code part three '^' fields."""
    parts = entry.split("~")
    assert len(parts) == 7 and parts[0] and parts[1] != "^^", entry
    for i in (1, 2, 3, 5, 6):
        assert len(parts[i].split("^")) == 3, entry
    return parts


def test_the_terminology_file_is_one_slicer_loads():
    doc = terminology()
    assert doc["@schema"] in TERMINOLOGY_SCHEMAS
    assert doc["SegmentationCategoryTypeContextName"] == naming.TERMINOLOGY_CONTEXT
    seen = set()
    for category in doc["SegmentationCodes"]["Category"]:
        assert {"CodingSchemeDesignator", "CodeValue", "CodeMeaning"} <= set(category)
        assert isinstance(category.get("showAnatomy", True), bool)
        for kind in category["Type"]:
            assert {"CodingSchemeDesignator", "CodeValue", "CodeMeaning", "3dSlicerLabel"} <= set(kind)
            rgb = kind["recommendedDisplayRGBValue"]
            assert len(rgb) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in rgb)
            assert not re.search(r"[~^|]", "".join(kind[k] for k in ("CodingSchemeDesignator", "CodeValue",
                                                                      "CodeMeaning")))
            key = (kind["CodingSchemeDesignator"], kind["CodeValue"])
            assert key not in seen, key
            seen.add(key)
            # a private code's scheme starts with 99 (DICOM PS3.16, private coding schemes)
            assert kind["CodingSchemeDesignator"] == "SCT" or kind["CodingSchemeDesignator"].startswith("99")
    cmake = (MODULE / "CMakeLists.txt").read_text()
    assert "Resources/Terminology/*.json" in cmake and Path(naming.TERMINOLOGY_FILE).parent.name == "Terminology"


def test_the_terminology_has_an_entry_per_preset_target():
    context, codes = report.read_terminology()
    assert context == naming.TERMINOLOGY_CONTEXT
    for name in PRESETS:
        for target in preset(name).targets:
            if target.terminology:
                key = (target.terminology["scheme"], target.terminology["code"])
                assert key in codes, (name, target.name, key)
                assert codes[key][1] == f"{key[0]}^{key[1]}^{target.terminology['meaning']}"  # same meaning
                entry = entry_parts(report.terminology_string(target.terminology))
                assert entry[0] == naming.TERMINOLOGY_CONTEXT and entry[2].startswith(f"{key[0]}^{key[1]}^")
    # the BraTS regions as the challenge defines them, each a type of the altered-structure category
    for scheme, code, meaning in BRATS_REGIONS.values():
        category, kind = codes[(scheme, code)]
        assert category == report.ALTERED_STRUCTURE and kind == f"{scheme}^{code}^{meaning}"


def test_terminology_entries_take_the_files_category():
    lymph = report.terminology_string({"scheme": "SCT", "code": "59441001", "meaning": "Lymph node"})
    assert entry_parts(lymph)[:3] == [naming.TERMINOLOGY_CONTEXT, "SCT^85756007^Tissue", "SCT^59441001^Lymph node"]
    lesion = report.terminology_string(preset("autopet").targets[0].terminology)
    assert lesion == (f"{naming.TERMINOLOGY_CONTEXT}~SCT^49755003^Morphologically Altered Structure"
                      "~SCT^52988006^Lesion~^^~Anatomic codes - DICOM master list~^^~^^")
    # a code the file does not list: as the card gives it, in the DICOM master list
    other = entry_parts(report.terminology_string({"scheme": "SCT", "code": "4147007", "meaning": "Mass"}))
    assert other[:3] == [naming.DICOM_TERMINOLOGY_CONTEXT, report.ALTERED_STRUCTURE, "SCT^4147007^Mass"]
    # separators in a card's text cannot split the entry
    odd = report.terminology_string({"scheme": "SCT", "code": "12~3", "meaning": "a^b|c"})
    assert entry_parts(odd)[2] == "SCT^12 3^a b c"
    assert report.terminology_string(None) == "" and report.terminology_string({"scheme": "SCT"}) == ""


def test_the_brats_cards_code_the_regions_as_the_challenge_defines_them():
    """The preset and the built-in model's card (its .card.json and the card in its bundle)."""
    models_dir = MODULE / "Resources" / "Models"
    for card in (preset("brats"), read_card(models_dir / "brats-sample"),
                 card_from_dict(json.loads((models_dir / "brats-sample.card.json").read_text()))):
        specs = report.segment_specs(card)
        assert [s["terminology"] for s in specs] == [
            {"scheme": scheme, "code": code, "meaning": meaning} for scheme, code, meaning in BRATS_REGIONS.values()]
        types = [entry_parts(report.terminology_string(s["terminology"]))[2] for s in specs]
        assert types == ["99CIML^BRATS-WT^Whole tumor", "99CIML^BRATS-TC^Tumor core", "99CIML^BRATS-ET^Enhancing tumor"]
    hecktor = {t.name: t.terminology for t in preset("hecktor").targets}
    assert hecktor == {"GTVp": {"scheme": "SCT", "code": "86049000", "meaning": "Neoplasm, Primary"},
                       "GTVn": {"scheme": "SCT", "code": "14799000", "meaning": "Neoplasm, Secondary"}}


def test_a_damaged_terminology_file_still_gives_entries(tmp_path):
    broken = tmp_path / "broken.term.json"
    broken.write_text("{not json")
    for path in (broken, tmp_path / "missing.term.json"):
        entry = entry_parts(report.terminology_string({"scheme": "SCT", "code": "52988006", "meaning": "Lesion"},
                                                      str(path)))
        assert entry[0] == naming.DICOM_TERMINOLOGY_CONTEXT and entry[2] == "SCT^52988006^Lesion"


# --- output volumes and the input selectors ---------------------------------------------------

def test_output_volumes_are_recognised_by_their_attribute():
    assert naming.OUTPUT_ATTRIBUTE.startswith("CIMLSegmentation.")
    assert naming.is_output_volume({naming.OUTPUT_ATTRIBUTE: naming.OUTPUT_HEAT_MAP}.get)
    assert naming.is_output_volume({naming.OUTPUT_ATTRIBUTE: naming.OUTPUT_EFFECT_MAP}.get)
    assert naming.is_output_volume({naming.HEAT_MAP_KEY_ATTRIBUTE: "WT/flair"}.get)  # saved by earlier versions
    assert not naming.is_output_volume({}.get) and not naming.is_output_volume({"Other.Attribute": "x"}.get)


def test_outputs_never_reach_auto_select():
    """What rebuildInputs does: drop the outputs, then guess; a heat map named after a modality
    would otherwise be the best match for it."""
    volumes = {"BraTS_flair": {}, "BraTS_t1": {}, "BraTS_t1ce": {}, "BraTS_t2": {},
               "seg heat map flair": {naming.OUTPUT_ATTRIBUTE: naming.OUTPUT_HEAT_MAP},
               "flair": {naming.HEAT_MAP_KEY_ATTRIBUTE: "flair"}}
    inputs = [name for name, attributes in volumes.items() if not naming.is_output_volume(attributes.get)]
    assert roles.auto_select(inputs, preset("brats")) == {"t1": "BraTS_t1", "t1ce": "BraTS_t1ce", "t2": "BraTS_t2",
                                                          "flair": "BraTS_flair"}
    assert roles.auto_select(list(volumes), preset("brats"))["flair"] == "flair"  # what it would pick unfiltered


def _function(path, name):
    tree = ast.parse(path.read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def _calls(node):
    return [ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)]


def test_the_glue_marks_outputs_before_they_enter_the_scene_and_filters_on_the_mark():
    load = _function(GLUE / "results.py", "loadOutputVolume")
    calls = _calls(load)
    assert calls.index("node.SetAttribute") < calls.index("slicer.mrmlScene.AddNode")
    assert "OUTPUT_ATTRIBUTE" in ast.unparse(load)
    rebuild = _function(GLUE / "widget.py", "rebuildInputs")
    assert {"results.isOutputVolume", "results.hideOutputVolumes"} <= set(_calls(rebuild))
    # the filter is on qMRMLNodeComboBox at every supported Slicer
    for version in VERSIONS:
        widgets = (API / version / "slicer-widgets-api.txt").read_text()
        assert "method qMRMLNodeComboBox.sortFilterProxyModel" in widgets
        assert "signal qMRMLNodeComboBox.nodeAdded" in widgets


# --- relations chart ---------------------------------------------------------------------------

def test_chart_colours_are_distinct_and_visible():
    for count in range(0, 21):
        colors = report.chart_colors(count)
        assert len(colors) == count and len(set(colors)) == count
        for color in colors:
            assert len(color) == 3 and all(0.0 <= c <= 1.0 for c in color)
            assert max(color) > 0.2 and min(color) < 0.95  # neither black (the default) nor white
    palette = report.chart_colors(len(report.CHART_COLORS))
    assert min(sum((a - b) ** 2 for a, b in zip(x, y)) ** 0.5 for x, y in itertools.combinations(palette, 2)) > 0.2
    assert report.chart_colors(4) == report.chart_colors(9)[:4]  # a modality keeps its colour


def test_index_legend_names_the_bars():
    assert report.index_legend(["WT", "TC", "ET"]) == "0: WT, 1: TC, 2: ET"
    assert report.index_legend([]) == ""


def test_the_chart_uses_the_label_column_and_colours_at_every_version():
    chart = _function(GLUE / "results.py", "relationsChart")
    calls = _calls(chart)
    assert {"series.SetLabelColumnName", "series.SetColor", "chart.SetXAxisTitle"} <= set(calls)
    assert "series.SetXColumnName" not in calls  # ignored by bar plots (qMRMLPlotView)
    for version in VERSIONS:
        mrml = (API / version / "slicer-mrml-api.txt").read_text().split()
        for method in ("vtkMRMLPlotSeriesNode.SetLabelColumnName", "vtkMRMLPlotSeriesNode.SetColor",
                       "vtkMRMLPlotChartNode.SetXAxisTitle", "vtkSegment.SetTag",
                       "vtkSegment.GetTerminologyEntryTagName", "vtkSegment.SetNameAutoGenerated",
                       "vtkSlicerTerminologiesModuleLogic.LoadTerminologyFromFile",
                       "vtkSlicerTerminologiesModuleLogic.GetLoadedTerminologyNames"):
            assert method in mrml, (version, method)


# --- parameter node ---------------------------------------------------------------------------

def test_every_parameter_node_field_is_bound_or_written_by_the_panel():
    """parameterNodeWrapper saves a field when it is assigned: each field is either bound to a
    widget in the .ui or assigned by the panel, and none is declared for nothing."""
    declared = set(re.findall(r"^    (\w+): ", (GLUE / "parameters.py").read_text(), re.M))
    assert declared == {"modelPath", "outputSegmentation", "device", "computeHeatMaps", "computeGradCam",
                        "heatMapOpacity", "trainingMinutes"}
    ui = (MODULE / "Resources" / "UI" / "CIMLSegmentation.ui").read_text()
    bound = set(re.findall(r'name="SlicerParameterName">\s*<string>(\w+)</string>', ui))
    written = set(re.findall(r"self\.parameters\.(\w+) = ", (GLUE / "widget.py").read_text()))
    assert declared <= bound | written, sorted(declared - bound - written)
    assert {"modelPath", "device"} <= written
