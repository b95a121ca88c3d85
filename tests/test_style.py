"""Project rules that keep the code small and obvious, checked on the source itself."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
APP_FILES = ("app.py", "app_layout.py", "app_actions.py")


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in sorted([*(ROOT / "chunky").glob("*.py"), *(ROOT / name for name in APP_FILES)]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_library_never_imports_gradio():
    offenders = [p.name for p in (ROOT / "chunky").glob("*.py") if "import gradio" in p.read_text()]
    assert not offenders
