"""The public Python API (issue 11): every name `capkey` exports resolves, every error capkey raises
by design derives from `capkey.Error`, `import capkey` stays light, and what type checkers see
(the TYPE_CHECKING imports) is what the runtime exports."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import capkey

PACKAGE = Path(capkey.__file__).resolve().parent


def test_every_exported_name_resolves_to_its_module():
    for name in capkey.__all__:
        value = getattr(capkey, name)
        assert value is not None, name
    assert capkey.AuthService.__module__.startswith("capkey.rules")
    with pytest.raises(AttributeError):
        capkey.NoSuchThing  # noqa: B018


def test_type_checkers_see_what_the_runtime_exports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
    seen = {alias.asname or alias.name for n in block.body if isinstance(n, ast.ImportFrom) for alias in n.names}
    assert seen == set(capkey._EXPORTS)


def _public_exception_classes():
    """Every exception class defined in a public module of capkey (not _cli, not _private names)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts
        if any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        module = ".".join(p for p in parts if p != "__init__")
        __import__(module)
        for name, obj in inspect.getmembers(sys.modules[module], inspect.isclass):
            if (issubclass(obj, BaseException) and obj.__module__ == module
                    and not name.startswith("_")):
                yield obj


def test_every_public_error_derives_from_capkey_error():
    classes = list(_public_exception_classes())
    assert len(classes) > 20
    missing = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, capkey.Error)]
    assert not missing


def test_errors_keep_their_builtin_bases():
    from capkey.cert.payload import PayloadError
    from capkey.link.errors import DeviceBusy

    assert issubclass(PayloadError, ValueError) and issubclass(DeviceBusy, capkey.LinkError)


def test_import_capkey_loads_no_tier():
    code = "import sys, capkey; print(sorted(m for m in sys.modules if m.startswith('capkey')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['capkey', 'capkey.errors']"
