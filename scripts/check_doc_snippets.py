#!/usr/bin/env python3
"""Check that code quoted in the docs equals the code it is taken from.

A Markdown page quotes a marked region of a source file like this:

    <!-- snippet: tests/test_custom_policies.cpp [custom-precision] -->
    ```cpp
    ...the region, dedented...
    ```

In the source file the region is the lines strictly between two lines that
consist of the comment `// [custom-precision]` (same text, any indentation).
The quoted block must equal the region with its common indentation removed.

    scripts/check_doc_snippets.py [--fix] [ROOT]

Exit status 1 when a snippet differs, a marker names an unknown file or
region, a region is not closed, or a `// [custom-…]` region of
tests/test_custom_policies.cpp is quoted by no page. `--fix` rewrites the
quoted blocks from the sources instead (then review the diff).
"""
import pathlib
import re
import sys
import textwrap

SNIPPET = re.compile(r"^<!-- snippet: (\S+) \[([\w.-]+)\] -->\s*$")
REGION = re.compile(r"^\s*// \[([\w.-]+)\]\s*$")
MUST_BE_QUOTED = ("tests/test_custom_policies.cpp", "custom-")


def regions_of(path):
    """{name: dedented text} of the marked regions of a source file."""
    out, open_at, lines = {}, {}, path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = REGION.match(line)
        if not m:
            continue
        name = m.group(1)
        if name in open_at:
            out[name] = textwrap.dedent("\n".join(lines[open_at.pop(name) + 1:i])).strip("\n")
        elif name in out:
            raise ValueError(f"{path}: region [{name}] appears twice")
        else:
            open_at[name] = i
    if open_at:
        raise ValueError(f"{path}: region(s) not closed: {', '.join(sorted(open_at))}")
    return out


def main(argv):
    fix = "--fix" in argv
    args = [a for a in argv if a != "--fix"]
    root = pathlib.Path(args[0] if args else pathlib.Path(__file__).resolve().parent.parent)
    errors, quoted, cache, checked = [], set(), {}, 0
    pages = sorted((root / "docs").rglob("*.md")) + [root / "README.md"]
    for page in pages:
        lines = page.read_text().splitlines()
        changed = False
        i = 0
        while i < len(lines):
            m = SNIPPET.match(lines[i])
            if not m:
                i += 1
                continue
            rel, name = m.group(1), m.group(2)
            where = f"{page.relative_to(root)}:{i + 1}"
            src = root / rel
            if rel not in cache:
                try:
                    cache[rel] = regions_of(src) if src.is_file() else None
                except ValueError as e:
                    errors.append(str(e))
                    cache[rel] = {}
            regions = cache[rel]
            if regions is None:
                errors.append(f"{where}: no such file {rel}")
                i += 1
                continue
            if name not in regions:
                errors.append(f"{where}: {rel} has no region [{name}]")
                i += 1
                continue
            quoted.add((rel, name))
            # The fenced block right after the marker.
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                errors.append(f"{where}: the marker must be followed by a ``` code block")
                i += 1
                continue
            end = i + 2
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if end >= len(lines):
                errors.append(f"{where}: code block not closed")
                break
            block = "\n".join(lines[i + 2:end]).strip("\n")
            checked += 1
            if block != regions[name]:
                if fix:
                    lines[i + 2:end] = regions[name].split("\n")
                    changed = True
                    end = i + 2 + len(regions[name].split("\n"))
                else:
                    errors.append(f"{where}: snippet [{name}] differs from {rel} (run scripts/check_doc_snippets.py --fix)")
            i = end + 1
        if changed:
            page.write_text("\n".join(lines) + "\n")
            print(f"rewrote snippets in {page.relative_to(root)}")

    rel, prefix = MUST_BE_QUOTED
    try:
        must = {n for n in regions_of(root / rel) if n.startswith(prefix)}
    except (OSError, ValueError) as e:
        errors.append(str(e))
        must = set()
    for name in sorted(must):
        if (rel, name) not in quoted:
            errors.append(f"{rel}: region [{name}] is quoted by no page under docs/")

    for e in errors:
        print("check_doc_snippets:", e)
    print(f"check_doc_snippets: {checked} snippet(s) checked, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
