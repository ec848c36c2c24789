"""MkDocs hooks (``mkdocs.yml``: ``hooks:``).

Pages that other branches of this round write land in ``docs/`` on merge; until then the site
still builds (strictly) with a placeholder that says whose page it is. Once every page is in,
``PENDING`` is empty and this hook does nothing.
"""

from __future__ import annotations

from mkdocs.structure.files import File, Files

# page -> who writes it
PENDING = {
    "installing.md": "the apps issue (Installing in your app: every recipe)",
}


def on_files(files: Files, config) -> Files:
    for page, owner in PENDING.items():
        if files.get_file_from_path(page) is None:
            title = page.removesuffix(".md").replace("-", " ").capitalize()
            text = f"# {title}\n\nThis page is written by {owner}.\n"
            files.append(File.generated(config, page, content=text))
    return files
