"""The labeling config: the XML that makes a Label Studio project a single-choice image classifier.

The names here (``IMAGE``, ``CONTROL``) are the contract with every other module: tasks put the image
under ``data.IMAGE``, predictions and annotations answer through the ``CONTROL`` choices.  A project
linked to ours is checked by reading its config back (``config_choices``), because Label Studio accepts
any choice an admin adds to the config and would otherwise store labels that are not classes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

from activeadv.errors import LabelStudioError

#: names used in the labeling config: ``<Image name=IMAGE>`` and ``<Choices name=CONTROL>``
IMAGE = "image"
CONTROL = "label"


def label_config(class_names: Sequence[str]) -> str:
    """Single-choice image classification config with one ``<Choice>`` per class (order kept)."""
    names = list(class_names)
    if not names:
        raise LabelStudioError("a Label Studio project needs at least one class name")
    if len(set(names)) != len(names):
        raise LabelStudioError("class names must be unique")
    choices = "".join(f"<Choice value={quoteattr(str(n))}/>" for n in names)
    return (f'<View><Image name="{IMAGE}" value="${IMAGE}"/>'
            f'<Choices name="{CONTROL}" toName="{IMAGE}" choice="single" showInline="true">{choices}</Choices></View>')


def config_choices(xml: str) -> list[str]:
    """The choice values of the ``<Choices name="label">`` control of a config, in order ([] if absent)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelStudioError(f"the Label Studio project's labeling config is not valid XML: {exc}") from None
    for node in root.iter("Choices"):
        if node.get("name") == CONTROL:
            return [c.get("value", "") for c in node.iter("Choice")]
    return []
