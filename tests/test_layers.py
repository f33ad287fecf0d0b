"""The one-way layers of pyproject.toml's import-linter contract (`make lint` runs `lint-imports`): the contract holds,
a back-edge breaks it, and every module of videosspo/ is named in a layer (an unlisted module would go unchecked)."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
import tomllib
from importlinter.contracts.layers import LayersContract

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
(LAYERS,) = [c for c in SETTINGS["contracts"] if c["type"] == "layers"]


def kept(graph) -> bool:
    contract = LayersContract(
        name=LAYERS["name"],
        session_options={"root_packages": SETTINGS["root_packages"]},
        contract_options={"layers": LAYERS["layers"]},
    )
    return contract.check(graph, verbose=False).kept


def graph():
    return grimp.build_graph(*SETTINGS["root_packages"])  # cached by grimp: a tenth of a second


def test_the_layers_hold_and_list_no_exceptions():
    assert kept(graph())
    assert "ignore_imports" not in LAYERS and "unmatched_ignore_imports_alerting" not in LAYERS


@pytest.mark.parametrize(
    "importer, imported",
    [
        ("models.families", "videosspo.sampling"),  # a family's sampler quirks belong to the family
        ("models", "videosspo.reference"),  # LoRA slots: models.lora
        ("videosspo.alignment", "benchmarks.vbench.synthetic"),  # the demo's scorers: videosspo.synth_scores
        ("videosspo.synth", "models"),  # a leaf importing an adapter
        ("videosspo.trainer", "videosspo.cli"),
    ],
)
def test_a_back_edge_breaks_the_contract(importer, imported):
    edged = graph()
    edged.add_import(importer=importer, imported=imported)
    assert not kept(edged)


def test_every_library_module_is_in_a_layer():
    named = {m.strip() for layer in LAYERS["layers"] for m in layer.split(":")}
    modules = {f"videosspo.{p.stem}" for p in (ROOT / "videosspo").glob("*.py") if p.stem != "__init__"}
    assert modules - named == set(), "add these to a layer of [tool.importlinter.contracts] in pyproject.toml"
    assert {"models", "benchmarks"} <= named
