"""The exports of a development build, made by `modal serve app.py`: the
same as `_world`'s, but the app's own modules are not in the snapshot.
They are imported from a read-only directory the host mounts (the app's
sources as they are now) the first time an instance needs them, so an
edit needs no rebuild: only a new mount. Deployed builds never use this.

The generated entry module sets `MODULE` and `APP_DIR` and imports, at
build time, the other modules the app imports (the standard library and
installed packages cannot be read at run time; see `modal build`)."""

import importlib
import sys
import traceback

from modal import _world

# Set by the entry module of the build.
MODULE = None
APP_DIR = None


def _load():
    """Imports the app's module from `APP_DIR` once per instance; a
    failure prints its traceback (for the deploy's message) and raises."""
    if MODULE in sys.modules:
        return
    sys.dont_write_bytecode = True
    if APP_DIR not in sys.path:
        sys.path.insert(0, APP_DIR)
    try:
        importlib.import_module(MODULE)
    except BaseException:
        sys.modules.pop(MODULE, None)
        traceback.print_exc()
        raise


class Function(_world.Function):
    def describe(self):
        _load()
        return super().describe()

    def call(self, function, input):
        _load()
        return super().call(function, input)


class Lifecycle(_world.Lifecycle):
    def enter(self):
        _load()
        return super().enter()

    def exit(self):
        _load()
        return super().exit()


class IncomingHandler(_world.IncomingHandler):
    def handle(self, request, response_out):
        _load()
        return super().handle(request, response_out)


class Needs(_world.Needs):
    def secrets(self):
        _load()
        return super().secrets()
