"""What the demo says about a classifier and its answers, in the words of the model's data set: the page's heading
and the verdict over the top 5 ("Which flower is this?", "### rose", "Not a flower I know")."""

from __future__ import annotations

from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.open_set import SCORE_NAMES


def subject(classifier: ImageClassifier) -> str | None:
    """What one image of the model's data set shows ("flower"), or ``None`` where its data set did not say."""
    return classifier.dataset.subject if classifier.dataset is not None else None


def unsure_words(classifier: ImageClassifier, mid_sentence: bool = False) -> str:
    """'Not a flower I know', or for a data set without a subject 'Not one of the classes I know'; with
    ``mid_sentence``, 'not a flower I know' (only the first letter changes: the "I" stays upper case)."""
    noun = subject(classifier)
    words = f"not a {noun} I know" if noun else "not one of the classes I know"
    return words if mid_sentence else words[0].upper() + words[1:]


def verdict(classifier: ImageClassifier, prediction: dict[str, float] | None, score: float | None = None) -> str:
    """One line over the top 5: the class's name, or "not a flower I know" (in the data set's words) below the
    model's unsure rule: the score and threshold that ``python -m flowers_hf.evaluate --ood`` recommended, where
    ``config.json`` stores them, else the calibrated top-1 probability below the unsure threshold (``train.py``).

    Args:
        classifier: the model, with its unsure rule and data set.
        prediction: class names and probabilities (the label output), or ``None`` before any prediction.
        score: the photo's score under the rule (``ImageClassifier.predict_and_score``); a rule on the logits
            needs it.
    """
    if not prediction:
        return ""
    name, probability = max(prediction.items(), key=lambda item: item[1])
    if classifier.is_unsure(probability, score):
        rule = classifier.unsure_rule
        below = (
            f"this model names a class from {rule.threshold:.0%}"
            if rule.score == "msp"
            else f"its {SCORE_NAMES[rule.score]}, {score:.2f}, lies below {rule.threshold:.2f}, where it names a class"
        )
        return (
            f"### {unsure_words(classifier)}\nThe best guess, *{name}*, has {probability:.0%}; {below}. Is it one of "
            f"the {len(classifier.class_names)} classes?"
        )
    return f"### {name}\n{probability:.0%} sure."


def heading(classifier: ImageClassifier) -> tuple[str, str]:
    """The page's title and its first lines, in the words of the model's data set."""
    noun, dataset = subject(classifier), classifier.dataset
    name = dataset.name if dataset is not None else None  # "Oxford Flowers-102", "beans", a folder's name
    title = f"{_short_name(dataset) or 'Image'} classifier"
    question = f"Which {noun} is this?" if noun else "What is in this photo?"
    known = f"{len(classifier.class_names)} classes" + (f" of {name}" if name else "")
    text = (
        f"# {question}\nUpload, paste or take a photo. The model knows {known} and shows its five best guesses, or "
        f"says “{unsure_words(classifier, mid_sentence=True)}” when it is unsure."
    )
    return title, text


def _short_name(dataset: DatasetIdentity | None) -> str | None:
    if dataset is None:
        return None
    if dataset.flowers102:
        return "Flowers-102"
    return "Synthetic flowers" if dataset.synthetic else dataset.name
