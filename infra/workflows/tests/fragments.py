"""Template fragments (train-triggers.yaml) merged into a copy of
infra/template.yaml, for the parts of issue 20 not in the template yet. The template wins: a
fragment's parameters, conditions, resources and outputs are added only where the template lacks
that name (so once a part moves into the template, the test runs the template's), and so are its
`StandIn::Parameter` / `StandIn::Resource` entries; `Merge::Property` sets one property of a
template resource unless it is already set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

import deploy
import harness


def merged_template(out: Path, *fragments: str) -> Path:
    template: dict[str, Any] = deploy.load_template()
    for name in fragments:
        fragment = yaml.load((harness.HERE / name).read_text(), Loader=deploy._CfnLoader)  # noqa: S506
        for section in ("Parameters", "Conditions", "Outputs"):
            for key, value in fragment.get(section, {}).items():
                template.setdefault(section, {}).setdefault(key, value)
        for key, value in fragment["Resources"].items():
            if value["Type"] == "StandIn::Parameter":
                template["Parameters"].setdefault(value["Name"], value["Definition"])
            elif value["Type"] == "StandIn::Resource":
                template["Resources"].setdefault(value["Name"], value["Definition"])
            elif value["Type"] == "Merge::Property":
                props = template["Resources"][value["Resource"]].setdefault("Properties", {})
                props.setdefault(value["Property"], value["Value"])
            else:
                template["Resources"].setdefault(key, value)
    out.write_text(json.dumps(template))
    return out
