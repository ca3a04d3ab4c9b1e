"""The Debian package tests build, install and purge one package in turn: they run in file
order even when pytest-randomly shuffles everything else (its shuffle runs before this)."""


def pytest_collection_modifyitems(items):
    here = __file__.rsplit("/", 1)[0] + "/"
    slots = [i for i, item in enumerate(items) if str(item.path).startswith(here)]
    ordered = sorted((items[i] for i in slots), key=lambda item: (str(item.path),
                                                                  item.location[1]))
    for slot, item in zip(slots, ordered, strict=False):
        items[slot] = item
