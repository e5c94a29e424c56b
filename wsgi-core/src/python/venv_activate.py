"""Activates a virtualenv in a running interpreter, as `site.venv()` does at start-up
(see venv.rs)."""

import os
import site
import sys


def _activate(root, site_packages, include_system):
    real = os.path.realpath
    base = {real(p) for p in site.getsitepackages()}
    try:
        base.add(real(site.getusersitepackages()))
    except Exception:
        pass
    if not include_system:
        sys.path[:] = [p for p in sys.path if real(p) not in base]
        site.ENABLE_USER_SITE = False
    # Prefixes first, so that code in .pth files sees the venv, as at a real start-up.
    sys.prefix = sys.exec_prefix = root
    site.PREFIXES = [root] + (site.PREFIXES if include_system else [])
    sys.executable = os.path.join(root, 'bin', 'python')
    os.environ['VIRTUAL_ENV'] = root
    before = list(sys.path)
    site.addsitedir(site_packages)
    added = [p for p in sys.path if p not in before]
    rest = [p for p in sys.path if p not in added]
    # After the standard library, so a package cannot shadow it, and before any system
    # site-packages that the venv includes, so the venv's own versions win.
    at = next((i for i, p in enumerate(rest) if real(p) in base), len(rest))
    sys.path[:] = rest[:at] + added + rest[at:]
