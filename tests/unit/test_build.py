"""Importing EdgeFlow without its compiled core fails with one sentence that says what to run."""

import subprocess
import sys
import textwrap


def test_missing_compiled_core_says_what_to_run():
    # A meta-path finder that hides the compiled ring, as a checkout that was never built would.
    code = textwrap.dedent("""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == "edgeflow._fast.ring":
                    raise ImportError("No module named 'edgeflow._fast.ring'")
        sys.meta_path.insert(0, Hide())
        import edgeflow
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "compiled core is not built" in last and "pip install -e ." in last, last


def test_public_names_are_exported():
    import edgeflow as ef
    for name in ("Publisher", "Subscriber", "Frame", "QoS", "ReceiveTimeout", "BackpressureTimeout",
                 "FrameTooLarge", "LayoutMismatch", "WriterGone", "ConfigError"):
        assert name in ef.__all__ and hasattr(ef, name), name
    assert issubclass(ef.ReceiveTimeout, TimeoutError) and issubclass(ef.ConfigError, ValueError)
