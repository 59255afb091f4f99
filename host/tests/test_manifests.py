"""The frozen-image manifests (boards/<name>/manifest.py) must freeze exactly what `capkey deploy`
copies to the board, or a frozen build would miss a module. They are read here with the same
directives MicroPython's manifest tool provides (paths relative to the manifest's folder)."""

from pathlib import Path

import pytest
from capkey_dev.build import BOARD_ARCH, ROOT, _deployed_on, device_path, sources


def frozen_files(manifest: Path) -> set[str]:
    found: set[str] = set()
    metadata_calls = []

    def metadata(**kw) -> None:
        # MicroPython's manifest tool: included manifests share one metadata(); a second call is
        # an error that stops the image build
        if metadata_calls:
            raise AssertionError(f"a second metadata() call, in {kw}")
        metadata_calls.append(kw)

    def run(path: Path) -> None:
        here = path.parent

        def include(p: str) -> None:
            if not p.startswith("$(PORT_DIR)"):  # the port's own manifest is not ours to check
                run((here / p).resolve())

        def package(name, files=(), base_path=".", opt=None):
            found.update(f"{name}/{f}" for f in files if (here / base_path / name / f).is_file())

        def module(name, base_path=".", opt=None):
            if (here / base_path / name).is_file():
                found.add(name)

        directives = {"include": include, "package": package, "module": module,
                      "metadata": metadata}
        exec(compile(path.read_text(), str(path), "exec"), directives)

    run(manifest)
    return found


@pytest.mark.parametrize("board", sorted(BOARD_ARCH))
def test_manifest_freezes_what_deploy_copies(board):
    deployed = {device_path(src).as_posix() for src in sources() if _deployed_on(src, board)}
    assert frozen_files(ROOT / "boards" / board / "manifest.py") == deployed
