"""Hostile: reads the grader's labels file outside its scratch folder and prints it."""


def load_model(path):
    with open("__LABELS__") as handle:
        print(handle.read())
    raise RuntimeError("read the labels")
