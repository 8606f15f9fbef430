"""The README teaches honest habits: a style is scored on pairs it was not trained on."""
import re

from conftest import REPO


def test_teaching_example_does_not_score_a_style_on_its_training_pairs():
    text = (REPO / "README.md").read_text("utf-8")
    block = text.split("## Teaching it your look", 1)[1].split("```", 2)[1]
    trained = set(re.findall(r"csr finetune --pairs (\S+)", block))
    scored = set(re.findall(r"csr eval --pairs (\S+)", block))
    assert trained and scored and not trained & scored
    assert "csr styles show" in block  # the card's cross-validated score
