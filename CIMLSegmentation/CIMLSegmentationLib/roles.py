"""Roles of the modalities (primary / auxiliary per target) and choosing volumes by their names.

What the user may edit: the trained weights fix the task decomposition (which modality is the
primary of which sub-task, which are its auxiliaries), so the role table is shown read-only. What
the user does choose is which loaded volume plays each modality; that assignment is the one
editable part, and it is pre-filled from the volume names. A modality may be left out ("none")
as long as every sub-task keeps one input; the outputs are then on the grid of the reference the
worker chooses (``reference_modality``).

Texts for the user (labels, Apply's tooltip, the reasons in "Segment again without...") are
``_("...")`` with the translation function the glue passes (see ``progress``). Plain Python on
the ``ciml.config.ModelCard`` (which loads neither torch nor numpy).
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ciml.config import ModelCard

from .progress import Translate, untranslated

# Names that radiologists and scanners give each sequence or modality. Longer, more specific
# aliases score higher, so "t2-flair" goes to flair and "T1 post" to t1ce, not to t2 or t1.
ALIASES: Dict[str, Tuple[str, ...]] = {
    "t1": ("t1", "t1w", "t1 pre", "t1 native", "mprage", "t1 weighted"),
    "t1ce": ("t1ce", "t1c", "t1gd", "t1 gd", "t1 post", "t1 contrast", "t1 ce", "t1 c",
             "ce t1", "t1 post contrast", "t1 gad", "post contrast"),
    "t2": ("t2", "t2w", "t2 weighted", "t2 tse"),
    "flair": ("flair", "t2 flair", "t2flair", "dark fluid", "tirm"),
    "pet": ("pet", "suv", "fdg", "pt", "pet ac"),
    "ct": ("ct", "cect", "ldct", "ct ac", "ctres", "hu"),  # CTres: autoPET's resampled CT
}
KIND_ALIASES = {"PET": ALIASES["pet"], "CT": ALIASES["ct"]}


@dataclass
class RoleRow:
    """One row of the role table: a target and how the network reads it."""
    target: str
    subtask: str
    primary: str
    auxiliaries: List[str]

    @property
    def cells(self) -> Tuple[str, str, str, str]:
        """The row's texts in the role table's columns: target, sub-task, primary, auxiliaries."""
        return self.target, self.subtask, self.primary, ", ".join(self.auxiliaries)


def role_table(card: ModelCard) -> List[RoleRow]:
    """Per target, its sub-task's primary and auxiliaries, in the card's target order (the card
    guarantees that every target belongs to exactly one sub-task)."""
    by_target = {target: sub for sub in card.subtasks for target in sub.targets}
    return [RoleRow(name, by_target[name].name, by_target[name].primary, list(by_target[name].auxiliaries))
            for name in card.target_names]


def modality_roles(card: ModelCard) -> Dict[str, Dict[str, List[str]]]:
    """For each modality, the targets it is primary for and those it is auxiliary for."""
    roles = {name: {"primary": [], "auxiliary": []} for name in card.modality_names}
    for row in role_table(card):
        roles[row.primary]["primary"].append(row.target)
        for aux in row.auxiliaries:
            roles[aux]["auxiliary"].append(row.target)
    return roles


def modality_label(card: ModelCard, modality: str, _: Translate = untranslated) -> str:
    """'flair (primary for WT; auxiliary for TC, ET)': the label of an input selector, in the
    language of ``_`` (the translation function)."""
    role = modality_roles(card).get(modality, {"primary": [], "auxiliary": []})
    parts = []
    if role["primary"]:
        parts.append(_("primary for {targets}").format(targets=", ".join(role["primary"])))
    if role["auxiliary"]:
        parts.append(_("auxiliary for {targets}").format(targets=", ".join(role["auxiliary"])))
    if not parts:
        return _("{modality} (unused)").format(modality=modality)
    return _("{modality} ({roles})").format(modality=modality, roles="; ".join(parts))


def _tokens(text: str) -> List[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)  # camelCase -> camel Case
    return [t for t in re.split(r"[^a-z0-9+]+", text.lower().replace("+c", " c")) if t]


def name_score(volume_name: str, modality: str, kind: str = "MR") -> float:
    """How well a volume name fits a modality: 0 (no sign) up to 100 (the name is the modality).

    Whole-token matches of an alias beat substring matches; longer aliases beat shorter ones.
    """
    tokens = _tokens(volume_name)
    compact = "".join(tokens)
    aliases = set(ALIASES.get(modality.lower(), ())) | set(KIND_ALIASES.get(kind, ()))
    aliases.add(modality.lower())
    best = 0.0
    for alias in aliases:
        alias_tokens = _tokens(alias)
        alias_compact = "".join(alias_tokens)
        if not alias_compact:
            continue
        n = len(alias_tokens)
        if compact == alias_compact:
            score = 100.0
        elif any(tokens[i:i + n] == alias_tokens for i in range(len(tokens) - n + 1)):
            score = 50.0 + len(alias_compact)
        elif alias_compact in tokens or (len(alias_compact) >= 3 and alias_compact in compact):
            score = 20.0 + len(alias_compact)
        else:
            continue
        best = max(best, score)
    return best


def auto_select(volume_names: Sequence[str], card: ModelCard) -> Dict[str, Optional[str]]:
    """Map each modality to the best-fitting volume name, each volume used at most once.

    Greedy on the highest score first, so a specific match ("t2-flair" -> flair) is taken before a
    weaker one ("t2-flair" -> t2) can claim the volume. Modalities with no match get None.
    """
    kinds = {m.name: m.kind for m in card.modalities}
    pairs = [(name_score(v, m, k), -i, v, m) for m, k in kinds.items()
             for i, v in enumerate(volume_names)]
    chosen: Dict[str, Optional[str]] = {m: None for m in kinds}
    used = set()
    for score, _order, volume, modality in sorted(pairs, reverse=True):
        if score <= 0 or chosen[modality] is not None or volume in used:
            continue
        chosen[modality] = volume
        used.add(volume)
    return chosen


def subtask_inputs(card: ModelCard) -> List[Tuple[str, List[str], List[str]]]:
    """Per sub-task: its name, its targets and the modalities it reads (primary first)."""
    return [(s.name, list(s.targets), [s.primary, *s.auxiliaries]) for s in card.subtasks]


def uncovered_subtasks(card: ModelCard, given: Sequence[str]) -> List[Tuple[str, List[str], List[str]]]:
    """The sub-tasks none of whose modalities is in ``given``: the worker refuses such a run."""
    return [row for row in subtask_inputs(card) if not set(row[2]) & set(given)]


def apply_disabled_reason(model_ok: bool, assignment: Dict[str, Optional[str]], model_problem: str = "",
                          card: Optional[ModelCard] = None, _: Translate = untranslated) -> str:
    """Why Apply cannot run now ('' when it can); shown as the button's tooltip. While a run goes
    on the button is Cancel, which the panel decides.

    With the ``card``, a modality may stay empty ("none") as long as every sub-task keeps at
    least one input, which is what the worker accepts; without it every modality needs a volume.

    Args:
        model_ok: a model is chosen and readable.
        assignment: modality -> the chosen volume's name or ID ('' or None: none).
        model_problem: the reason when not ``model_ok`` (already in the user's language).
        card: the model's card, for the rule per sub-task.
        _: the translation function (``slicer.i18n.tr`` in Slicer).
    """
    if not model_ok:
        return model_problem or _("Choose a model first.")
    if card is None:
        missing = [m for m, v in assignment.items() if not v]
        if missing:
            return _("Select a volume for: {modalities}.").format(modalities=", ".join(missing))
    else:
        uncovered = uncovered_subtasks(card, [m for m, v in assignment.items() if v])
        if uncovered:
            name, targets, modalities = uncovered[0]
            return _("Sub-task {subtask} ({targets}) has no input: select a volume for at least one of "
                     "{modalities}.").format(subtask=name, targets=", ".join(targets), modalities=", ".join(modalities))
    seen: Dict[str, str] = {}
    for modality, volume in assignment.items():
        if not volume:
            continue
        if volume in seen:
            return _("The same volume is selected for {first} and {second}.").format(first=seen[volume],
                                                                                   second=modality)
        seen[volume] = modality
    return ""


def given_inputs(card: ModelCard, assignment: Dict[str, object]) -> Dict[str, object]:
    """The selected inputs only ({modality: volume}), in the card's modality order: what the job
    exports and passes as --input."""
    return {m: assignment[m] for m in card.modality_names if assignment.get(m) is not None}


def reference_modality(card: ModelCard, given: Sequence[str]) -> Optional[str]:
    """The modality whose grid the outputs are on, as the worker chooses it: the card's reference
    when given, else the first given modality in card order (None when nothing is given)."""
    if card.reference in given:
        return card.reference
    return next((m for m in card.modality_names if m in given), None)


def withhold_choices(card: ModelCard, given: Sequence[str], _: Translate = untranslated) -> List[Tuple[str, str]]:
    """For "Segment again without...": each given modality (card order) with '' when the run can
    go on without it, else why not (it is the last input of a sub-task), in the language of ``_``."""
    choices = []
    for modality in [m for m in card.modality_names if m in given]:
        left = uncovered_subtasks(card, [m for m in given if m != modality])
        reason = _("the only input left for {targets}").format(
            targets=", ".join(t for row in left for t in row[1])) if left else ""
        choices.append((modality, reason))
    return choices


def inputs_to_guess(assigned: Dict[str, Optional[str]], declined: Sequence[str]) -> List[str]:
    """The modalities the panel pre-selects from the volume names: those without a volume that
    the user has not set to "none" (a deliberate none stays none, also after a scene reopen)."""
    return [m for m, v in assigned.items() if not v and m not in declined]
